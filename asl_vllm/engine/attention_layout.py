"""Attention metadata for a batch whose requests read a shifted slice of their KV.

A request that kept only the tail of its slot range (offset D, a multiple of the
block size) is presented to the backend as a shorter sequence: `seq_len - D`
tokens whose block table row starts at block D / block_size. Rows are the
tokens actually run this layer (all of them, or a prefill's selected subset).
Metadata is built by vLLM's own builder, so every backend sees its usual input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from vllm.v1.attention.backend import CommonAttentionMetadata

from asl_vllm.device_upload import to_device


@dataclass(frozen=True)
class RequestView:
    """What one request looks like to one layer's attention in this step."""

    num_rows: int
    seq_len: int
    kv_offset: int


@dataclass
class StepTables:
    """The step's per-request tensors, as the model runner built them."""

    block_table: torch.Tensor  # [num_reqs, max_blocks] int32
    block_size: int
    is_prefilling: torch.Tensor  # [num_reqs] bool

    def select(self, requests: Sequence[int]) -> StepTables:
        """The rows of the given requests (batch indices), for a layer that runs only them."""
        if list(requests) == list(range(len(requests))):
            return self
        index = torch.tensor(requests, dtype=torch.long)
        return StepTables(
            self.block_table[to_device(index, self.block_table.device)], self.block_size, self.is_prefilling[index]
        )


def build_common_metadata(
    tables: StepTables,
    views: Sequence[RequestView],
    slot_mapping: torch.Tensor,
    positions: torch.Tensor,
) -> CommonAttentionMetadata:
    num_reqs = len(views)
    device = tables.block_table.device
    rows = torch.tensor([view.num_rows for view in views], dtype=torch.int32)
    query_start_loc_cpu = torch.zeros(num_reqs + 1, dtype=torch.int32)
    torch.cumsum(rows, 0, out=query_start_loc_cpu[1:])
    seq_lens_cpu = torch.tensor([view.seq_len - view.kv_offset for view in views], dtype=torch.int32)
    block_table = _shifted_block_table(tables, views)
    return CommonAttentionMetadata(
        query_start_loc=to_device(query_start_loc_cpu, device),
        query_start_loc_cpu=query_start_loc_cpu,
        seq_lens=to_device(seq_lens_cpu, device),
        seq_lens_cpu_upper_bound=seq_lens_cpu,
        num_reqs=num_reqs,
        num_actual_tokens=int(rows.sum()),
        max_query_len=int(rows.max()),
        max_seq_len=int(seq_lens_cpu.max()),
        block_table_tensor=block_table,
        slot_mapping=slot_mapping,
        causal=True,
        is_prefilling=tables.is_prefilling[:num_reqs],
        positions=positions,
    )


def _shifted_block_table(tables: StepTables, views: Sequence[RequestView]) -> torch.Tensor:
    base = tables.block_table[: len(views)]
    if not any(view.kv_offset for view in views):
        return base
    shifted = torch.zeros_like(base)
    width = base.shape[1]
    for index, view in enumerate(views):
        assert view.kv_offset % tables.block_size == 0, "kept KV must start on a block boundary"
        first = view.kv_offset // tables.block_size
        shifted[index, : width - first] = base[index, first:]
    return shifted
