"""vLLM's common attention metadata, built for a batch of the pruning loop and re-pointed for a pruned request.

vLLM 0.32, `CommonAttentionMetadata` (vllm/v1/attention/backend.py): the
dataclass every attention metadata builder reads. The plugin builds one for the
rows a layer of the pruning loop runs (`causal_metadata`), with the fields
below, the others at their defaults; and gives a step's metadata another block
table and sequence lengths (`with_sequences`), which must also clear the
private `_num_computed_tokens_cache` (the `seq_lens - query_lens` that
`compute_num_computed_tokens` keeps), or builders would read the unshifted one.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from vllm.v1.attention.backend import CommonAttentionMetadata

from asl_vllm.device_upload import to_device


def causal_metadata(
    rows: torch.Tensor,
    seq_lens_cpu: torch.Tensor,
    block_table: torch.Tensor,
    slot_mapping: torch.Tensor,
    is_prefilling: torch.Tensor,
    positions: torch.Tensor,
) -> CommonAttentionMetadata:
    """Causal metadata of a batch: request r runs `rows[r]` query rows (int32, CPU) against the first
    `seq_lens_cpu[r]` slots of its `block_table` row; tensors go to the block table's device."""
    device = block_table.device
    query_start_loc_cpu = torch.zeros(len(rows) + 1, dtype=torch.int32)
    torch.cumsum(rows, 0, out=query_start_loc_cpu[1:])
    return CommonAttentionMetadata(
        query_start_loc=to_device(query_start_loc_cpu, device),
        query_start_loc_cpu=query_start_loc_cpu,
        seq_lens=to_device(seq_lens_cpu, device),
        seq_lens_cpu_upper_bound=seq_lens_cpu,
        num_reqs=len(rows),
        num_actual_tokens=int(rows.sum()),
        max_query_len=int(rows.max()),
        max_seq_len=int(seq_lens_cpu.max()),
        block_table_tensor=block_table,
        slot_mapping=slot_mapping,
        causal=True,
        is_prefilling=is_prefilling,
        positions=positions,
    )


def with_sequences(
    common: CommonAttentionMetadata,
    block_table_tensor: torch.Tensor,
    seq_lens: torch.Tensor,
    seq_lens_cpu_upper_bound: torch.Tensor | None,
) -> CommonAttentionMetadata:
    """`common` with another block table and sequence lengths, and without the computed-token counts it cached
    from the old lengths (`CommonAttentionMetadata._num_computed_tokens_cache`)."""
    return replace(
        common,
        block_table_tensor=block_table_tensor,
        seq_lens=seq_lens,
        seq_lens_cpu_upper_bound=seq_lens_cpu_upper_bound,
        _num_computed_tokens_cache=None,
    )
