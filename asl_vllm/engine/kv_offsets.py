"""What a pruned request looks like to vLLM's own forward: per KV cache group, a shorter sequence.

After a pruning prefill, every layer of KV cache group g keeps a request's KV
in the tail slots [D_g, N) of its slot range, D_g a multiple of the block size
(`asl_vllm.budget`). Every later step of the request runs vLLM's normal
forward, compiled or graph-captured: group g's attention metadata presents the
request as `seq_len - D_g` tokens whose block-table row starts at block
D_g / block_size, and a request re-run on its selected tokens (two-pass) gets
RoPE position = slot - position offset. New tokens still land at their natural
slots N + t: the slot mapping is computed from the true positions before they
are shifted. `max_seq_len` stays vLLM's: a shifted length is never longer, so
vLLM's value remains the upper bound the backends take it for, and CUDA-graph
capture keeps the `max_model_len` vLLM captures with.

The offsets live in one persistent per-row table, rewritten (one indexed write
and one upload) only when the batch's rows or the pruned requests change; a
step whose rows did not move costs a list comparison. FULL CUDA graphs read the
block table and `seq_lens` tensors of the metadata they were captured with
(FlashAttention, Triton and FlashInfer's TRT-LLM path hand them to the kernel
as they are), so with `always_shift` every build writes the group's table and
lengths into the same persistent buffers: a plain copy for a group with no
pruned row, a gather and a subtraction otherwise.
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


class KVOffsets:
    """Pruned requests of one model runner and the per-row tensors their later steps read.

    `always_shift`: route every step's metadata through the persistent buffers, even with no
    pruned request in the batch, so that CUDA graphs see the same tensors at capture and replay.

    Per-row table layout (int32, one column per batch row): rows [0, G) token offsets per
    group, rows [G, 2G) first block per group, row 2G the position offset.
    """

    def __init__(
        self, num_groups: int, block_size: int, max_num_reqs: int, device: torch.device, always_shift: bool
    ) -> None:
        self.block_size = block_size
        self.always_shift = always_shift
        self.requests: dict[str, PrunedKV] = {}
        self.num_groups = num_groups
        # Table writes and uploads done so far: a step that must cost nothing adds none.
        self.writes = 0
        values = 2 * num_groups + 1
        self._slots: dict[str, int] = {}
        self._free_slots = list(range(max_num_reqs - 1, -1, -1))
        self._request_values = torch.zeros(max_num_reqs, values, dtype=torch.int32)
        self._rows_cpu = torch.zeros(values, max_num_reqs, dtype=torch.int32, pin_memory=device.type == "cuda")
        self._rows = self._rows_cpu if device.type == "cpu" else torch.zeros_like(self._rows_cpu, device=device)
        self._upload_done = torch.cuda.Event() if device.type == "cuda" else None
        self._seq_lens = torch.zeros(num_groups, max_num_reqs, dtype=torch.int32, device=device)
        self._seq_lens_cpu = torch.zeros(num_groups, max_num_reqs, dtype=torch.int32)
        self._tables: list[torch.Tensor | None] = [None] * num_groups
        self._columns: torch.Tensor | None = None
        # The rows the table was last written for, and whether a request changed since.
        self._batch: list[str | None] = []
        self._changed = False
        self._nonzero = False
        # Whether the rows of the current step hold any nonzero offset, per group / for positions.
        self._shifted_groups = [False] * num_groups
        self._shifted_positions = False

    def add(self, req_id: str, pruned: PrunedKV) -> None:
        assert all(offset % self.block_size == 0 for offset in pruned.group_offsets), "offsets must be block-aligned"
        self.requests[req_id] = pruned
        slot = self._slots.get(req_id)
        if slot is None:
            slot = self._slots[req_id] = self._free_slot()
        offsets = list(pruned.group_offsets)
        self._request_values[slot] = torch.tensor(
            [*offsets, *(offset // self.block_size for offset in offsets), pruned.position_offset], dtype=torch.int32
        )
        self._changed = True

    def discard(self, req_ids: Sequence[str]) -> None:
        for req_id in req_ids:
            if self.requests.pop(req_id, None) is not None:
                self._free_slots.append(self._slots.pop(req_id))
                self._changed = True

    def refresh(self, req_ids: list[str | None]) -> None:
        """Write this step's rows (`req_ids` in persistent-batch order) into the per-row table.

        Nothing is written when no pruned request is held and the table is already zero, or
        when neither the rows nor the pruned requests changed since the last write."""
        if not self._slots and not self._nonzero:
            return
        if not self._changed and self._batch == req_ids:
            return
        self._batch = list(req_ids)
        self._changed = False
        rows = [row for row, req_id in enumerate(req_ids) if req_id in self._slots]
        if not rows and not self._nonzero:
            return
        if self._upload_done is not None:
            # The previous upload reads the pinned table asynchronously: let it finish first.
            self._upload_done.synchronize()
        self._rows_cpu.zero_()
        if rows:
            slots = torch.tensor([self._slots[req_ids[row]] for row in rows])
            values = self._request_values[slots]
            self._rows_cpu[:, rows] = values.T
            nonzero = values.ne(0).any(dim=0).tolist()
        else:
            nonzero = [False] * self._rows_cpu.shape[0]
        self._shifted_groups = nonzero[: self.num_groups]
        self._shifted_positions = nonzero[-1]
        self._nonzero = bool(rows)
        if self._rows is not self._rows_cpu:
            self._rows.copy_(self._rows_cpu, non_blocking=True)
            assert self._upload_done is not None
            self._upload_done.record()
        self.writes += 1

    def shift_positions(self, positions: torch.Tensor, row_of_token: torch.Tensor) -> None:
        """In place: positions[t] -= position offset of token t's row (two-pass requests only)."""
        if self._shifted_positions:
            positions -= self._rows[2 * self.num_groups][row_of_token.long()]

    def shift(self, group: int, common: CommonAttentionMetadata) -> CommonAttentionMetadata:
        """Group `group`'s metadata with each row's head blocks skipped and its length reduced."""
        shifted = self._shifted_groups[group]
        if not (self.always_shift or shifted):
            return common
        rows = common.num_reqs
        table = common.block_table_tensor
        width = table.shape[1]
        out_table = self._table(group, table)[:rows]
        # No backend reads a row past cdiv(seq_len, block_size) blocks, and max_seq_len bounds every
        # seq_len: the columns past it keep stale ids nobody reads (capture fills them all).
        used = min(width, -(-common.max_seq_len // self.block_size))
        seq_lens = self._seq_lens[group, :rows]
        upper = common.seq_lens_cpu_upper_bound
        if shifted:
            first_blocks = self._rows[self.num_groups + group, :rows]
            index = torch.add(self._column_index(width, table.device)[:used].view(1, used), first_blocks.view(rows, 1))
            torch.gather(table, 1, index.clamp_(max=width - 1), out=out_table[:, :used])
            torch.sub(common.seq_lens, self._rows[group, :rows], out=seq_lens)
            if upper is not None:
                upper = torch.sub(upper[:rows], self._rows_cpu[group, :rows], out=self._seq_lens_cpu[group, :rows])
        else:
            out_table[:, :used].copy_(table[:, :used])
            seq_lens.copy_(common.seq_lens)
        return replace(
            common,
            block_table_tensor=out_table,
            seq_lens=seq_lens,
            seq_lens_cpu_upper_bound=upper,
            _num_computed_tokens_cache=None,
        )

    def _free_slot(self) -> int:
        """A row of the per-request table that no held request uses; the table doubles when all are."""
        if not self._free_slots:
            size = self._request_values.shape[0]
            self._request_values = torch.cat([self._request_values, torch.zeros_like(self._request_values)])
            self._free_slots = list(range(2 * size - 1, size - 1, -1))
        return self._free_slots.pop()

    def _table(self, group: int, table: torch.Tensor) -> torch.Tensor:
        """The group's persistent shifted block table, as wide as vLLM's."""
        shifted = self._tables[group]
        if shifted is None or shifted.shape[1] != table.shape[1]:
            shifted = self._tables[group] = torch.zeros(
                self._seq_lens.shape[1], table.shape[1], dtype=table.dtype, device=table.device
            )
        return shifted

    def _column_index(self, width: int, device: torch.device) -> torch.Tensor:
        if self._columns is None or self._columns.shape[0] != width:
            self._columns = torch.arange(width, device=device)
        return self._columns
