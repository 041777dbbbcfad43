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
step whose rows did not move costs a list comparison.

FULL CUDA graphs (`always_shift`) read the block table and `seq_lens` tensors of
the metadata they were captured with (FlashAttention, Triton and FlashInfer's
TRT-LLM path hand them to the kernel as they are). The block table they read is
vLLM's own per-group device table, which vLLM rewrites from its host copy at
the start of every step (`commit_block_table`): `prepare_step`, once the step's
slot mappings are computed, shifts a group's pruned rows in place there, and a
group with no pruned row costs nothing. Lengths differ per group, so capture
hands each group a persistent length buffer of its own, which `prepare_step`
fills for all groups at once (vLLM's lengths minus each row's offset: two
operations per step, whatever the number of groups). Without FULL graphs a
group with no pruned row keeps vLLM's metadata untouched, and a shifted group's
table and lengths go to buffers of their own (on the CPU build vLLM's device
table is its host table, which must not be shifted).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from vllm.v1.attention.backend import CommonAttentionMetadata

from asl_vllm.vllm_compat.attention_metadata import with_sequences


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
        self._any_shifted_group = False
        # FULL graphs: (vLLM's seq_lens, every group's length buffer, the source viewed per group) of `prepare_step`.
        self._length_copy: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
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
        self._any_shifted_group = any(self._shifted_groups)
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

    def prepare_step(
        self,
        seq_lens: torch.Tensor,
        seq_lens_upper_bound: torch.Tensor,
        block_table: Callable[[int], torch.Tensor],
        num_reqs: int,
    ) -> None:
        """With FULL graphs, once per step after vLLM's input preparation: every group's length buffer from
        vLLM's `seq_lens` (all rows, padding included; one copy), and each shifted group's pruned rows shifted
        in place in vLLM's device block table (`block_table(g)`, rewritten by vLLM next step) up to the
        columns the longest row reads (`seq_lens_upper_bound`, on the host)."""
        if not self.always_shift:
            return
        if self._length_copy is None or self._length_copy[0] is not seq_lens:
            width = seq_lens.shape[0]
            source = seq_lens.view(1, width).expand(self.num_groups, width)
            self._length_copy = (seq_lens, self._seq_lens[:, :width], source)
        _, lengths, source = self._length_copy
        lengths.copy_(source)
        if not self._any_shifted_group:
            return
        rows = min(num_reqs, lengths.shape[1])
        lengths[:, :rows].sub_(self._rows[: self.num_groups, :rows])
        longest = int(seq_lens_upper_bound[:rows].max())
        for group, shifted in enumerate(self._shifted_groups):
            if shifted:
                table = block_table(group)[:rows]
                used = min(table.shape[1], -(-longest // self.block_size))
                scratch = self._table(group, table)[:rows, :used]
                self._gather_rows(group, table, rows, used, scratch)
                table[:, :used].copy_(scratch)

    def shift(self, group: int, common: CommonAttentionMetadata, capture: bool = False) -> CommonAttentionMetadata:
        """Group `group`'s metadata with each row's head blocks skipped and its length reduced.

        `capture`: a build for CUDA-graph capture (or a FULL dummy run), which must hand the graph the
        persistent length buffer that `prepare_step` fills."""
        if self.always_shift:
            return self._shift_captured(group, common, capture)
        if not self._shifted_groups[group]:
            return common
        rows = common.num_reqs
        table = common.block_table_tensor
        out_table = self._table(group, table)[:rows]
        # No backend reads a row past cdiv(seq_len, block_size) blocks, and max_seq_len bounds every
        # seq_len: the columns past it keep stale ids nobody reads.
        used = min(table.shape[1], -(-common.max_seq_len // self.block_size))
        self._gather_rows(group, table, rows, used, out_table)
        seq_lens = torch.sub(common.seq_lens, self._rows[group, :rows], out=self._seq_lens[group, :rows])
        return with_sequences(common, out_table, seq_lens, self._upper_bound(group, common, rows))

    def _shift_captured(self, group: int, common: CommonAttentionMetadata, capture: bool) -> CommonAttentionMetadata:
        """FULL graphs: vLLM's block table (shifted in place by `prepare_step`) and this group's length buffer."""
        if not (capture or self._shifted_groups[group]):
            return common  # a graph reads the buffer, which holds vLLM's lengths; an eager step reads vLLM's own
        rows = common.num_reqs
        seq_lens = self._seq_lens[group, :rows]
        if capture:
            seq_lens.copy_(common.seq_lens)  # a dummy batch: no prepared step, no pruned row
            return with_sequences(common, common.block_table_tensor, seq_lens, common.seq_lens_cpu_upper_bound)
        return with_sequences(common, common.block_table_tensor, seq_lens, self._upper_bound(group, common, rows))

    def _gather_rows(self, group: int, table: torch.Tensor, rows: int, used: int, out: torch.Tensor) -> None:
        """out[r, :used] = row r of `table` from the row's first kept block in `group` on."""
        width = table.shape[1]
        first_blocks = self._rows[self.num_groups + group, :rows]
        index = torch.add(self._column_index(width, table.device)[:used].view(1, used), first_blocks.view(rows, 1))
        torch.gather(table, 1, index.clamp_(max=width - 1), out=out[:, :used])

    def _upper_bound(self, group: int, common: CommonAttentionMetadata, rows: int) -> torch.Tensor | None:
        upper = common.seq_lens_cpu_upper_bound
        if upper is None:
            return None
        return torch.sub(upper[:rows], self._rows_cpu[group, :rows], out=self._seq_lens_cpu[group, :rows])

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
