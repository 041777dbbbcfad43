"""Attention metadata for a batch whose requests read a shifted slice of their KV.

A request that kept only the tail of its slot range (offset D, a multiple of the
block size) is presented to the backend as a shorter sequence: `seq_len - D`
tokens whose block table row starts at block D / block_size. Rows are the
tokens actually run this layer (all of them, or a prefill's selected subset).
Metadata is built by vLLM's own builder, so every backend sees its usual input;
the common metadata it starts from is `vllm_compat.attention_metadata.causal_metadata`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from vllm.v1.attention.backend import CommonAttentionMetadata

from asl_vllm.device_upload import to_device
from asl_vllm.vllm_compat.attention_metadata import causal_metadata


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
    rows = torch.tensor([view.num_rows for view in views], dtype=torch.int32)
    seq_lens_cpu = torch.tensor([view.seq_len - view.kv_offset for view in views], dtype=torch.int32)
    block_table = _shifted_block_table(tables, views)
    return causal_metadata(rows, seq_lens_cpu, block_table, slot_mapping, tables.is_prefilling[:num_reqs], positions)


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
