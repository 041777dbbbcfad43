"""What a pruned request looks like to vLLM's own forward: per KV cache group, a shorter sequence.

After a pruning prefill, every layer of KV cache group g keeps a request's KV
in the tail slots [D_g, N) of its slot range, D_g a multiple of the block size
(`asl_vllm.budget`). Every later step of the request runs vLLM's normal
forward, compiled or graph-captured: group g's attention metadata presents the
request as `seq_len - D_g` tokens whose block-table row starts at block
D_g / block_size, and a request re-run on its selected tokens (two-pass) gets
RoPE position = slot - position offset. New tokens still land at their natural
slots N + t: the slot mapping is computed from the true positions before they
are shifted.

The values live in persistent per-row buffers, refreshed once per step after
vLLM has updated its persistent batch (rows move between steps), so a CUDA
graph captured once reads the current offsets on every replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from vllm.v1.attention.backend import CommonAttentionMetadata


@dataclass(frozen=True)
class PrunedKV:
    """The per-group KV offsets a request keeps after its pruning prefill."""

    group_offsets: tuple[int, ...]
    # Two-pass re-runs number the kept tokens from 0: RoPE position = slot - position_offset.
    position_offset: int = 0


class _Buffer:
    """One value per persistent-batch row, on the host and on the device (the same tensor on CPU)."""

    def __init__(self, size: int, dtype: torch.dtype, device: torch.device) -> None:
        self.cpu = torch.zeros(size, dtype=dtype)
        self.device = self.cpu if device.type == "cpu" else torch.zeros(size, dtype=dtype, device=device)

    def upload(self, count: int) -> None:
        if self.device is not self.cpu:
            self.device[:count].copy_(self.cpu[:count], non_blocking=True)


class KVOffsets:
    """Pruned requests of one model runner and the per-row tensors their later steps read.

    `always_shift`: route every step's metadata through the persistent buffers, even with no
    pruned request in the batch, so that CUDA graphs see the same tensors at capture and replay.
    """

    def __init__(
        self, num_groups: int, block_size: int, max_num_reqs: int, device: torch.device, always_shift: bool
    ) -> None:
        self.block_size = block_size
        self.always_shift = always_shift
        self.requests: dict[str, PrunedKV] = {}
        self._token_offsets = [_Buffer(max_num_reqs, torch.int32, device) for _ in range(num_groups)]
        self._first_blocks = [_Buffer(max_num_reqs, torch.int64, device) for _ in range(num_groups)]
        self._position_offsets = _Buffer(max_num_reqs, torch.int64, device)
        self._seq_lens = [torch.zeros(max_num_reqs, dtype=torch.int32, device=device) for _ in range(num_groups)]
        self._seq_lens_cpu = [torch.zeros(max_num_reqs, dtype=torch.int32) for _ in range(num_groups)]
        self._tables: list[torch.Tensor | None] = [None] * num_groups
        self._columns: torch.Tensor | None = None
        # Whether the rows of the current step hold any nonzero offset, per group / for positions.
        self._shifted_groups = [False] * num_groups
        self._shifted_positions = False
        self._rows_written = 0

    def add(self, req_id: str, pruned: PrunedKV) -> None:
        assert all(offset % self.block_size == 0 for offset in pruned.group_offsets), "offsets must be block-aligned"
        self.requests[req_id] = pruned

    def discard(self, req_ids: Sequence[str]) -> None:
        for req_id in req_ids:
            self.requests.pop(req_id, None)

    def refresh(self, req_ids: Sequence[str | None]) -> None:
        """Write this step's rows (`req_ids` in persistent-batch order) into the per-row buffers."""
        if not self.requests and not self._rows_written:
            return
        count = len(req_ids)
        stale = max(count, self._rows_written)
        for buffer in (*self._token_offsets, *self._first_blocks, self._position_offsets):
            buffer.cpu[:stale].zero_()
        self._shifted_groups = [False] * len(self._token_offsets)
        self._shifted_positions = False
        for row, req_id in enumerate(req_ids):
            pruned = self.requests.get(req_id) if req_id is not None else None
            if pruned is None:
                continue
            for group, offset in enumerate(pruned.group_offsets):
                if offset:
                    self._token_offsets[group].cpu[row] = offset
                    self._first_blocks[group].cpu[row] = offset // self.block_size
                    self._shifted_groups[group] = True
            if pruned.position_offset:
                self._position_offsets.cpu[row] = pruned.position_offset
                self._shifted_positions = True
        for buffer in (*self._token_offsets, *self._first_blocks, self._position_offsets):
            buffer.upload(stale)
        self._rows_written = count if self.requests else 0

    def shift_positions(self, positions: torch.Tensor, row_of_token: torch.Tensor) -> None:
        """In place: positions[t] -= position offset of token t's row (two-pass requests only)."""
        if self._shifted_positions:
            positions -= self._position_offsets.device[row_of_token.long()]

    def shift(self, group: int, common: CommonAttentionMetadata) -> CommonAttentionMetadata:
        """Group `group`'s metadata with each row's head blocks skipped and its length reduced."""
        if not (self.always_shift or self._shifted_groups[group]):
            return common
        rows = common.num_reqs
        table = common.block_table_tensor
        width = table.shape[1]
        shifted = self._tables[group]
        if shifted is None or shifted.shape[1] != width:
            shifted = self._tables[group] = torch.zeros(
                self._seq_lens[group].shape[0], width, dtype=table.dtype, device=table.device
            )
        if self._columns is None or self._columns.shape[0] != width:
            self._columns = torch.arange(width, device=table.device)
        index = (self._columns.view(1, width) + self._first_blocks[group].device[:rows].view(rows, 1)).clamp_(
            max=width - 1
        )
        torch.gather(table, 1, index, out=shifted[:rows])
        seq_lens = torch.sub(
            common.seq_lens, self._token_offsets[group].device[:rows], out=self._seq_lens[group][:rows]
        )
        upper = common.seq_lens_cpu_upper_bound
        if upper is not None:
            upper = torch.sub(upper[:rows], self._token_offsets[group].cpu[:rows], out=self._seq_lens_cpu[group][:rows])
        return replace(
            common,
            block_table_tensor=shifted[:rows],
            seq_lens=seq_lens,
            seq_lens_cpu_upper_bound=upper,
            max_seq_len=int(upper.max()) if upper is not None and rows else common.max_seq_len,
            _num_computed_tokens_cache=None,
        )
