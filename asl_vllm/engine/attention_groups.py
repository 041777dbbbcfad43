"""vLLM's attention group, with each pruned request's KV offsets applied to its group's metadata.

vLLM 0.32 builds every KV cache group's attention metadata through
`AttentionGroup._with_kernel_block_table` (`vllm/v1/worker/utils.py`): for the
step (`build_metadata`), for CUDA-graph capture
(`build_metadata_for_cudagraph_capture`) and for drafting. Overriding that one
method shifts each request's block-table row and length by its group's offset
for all three, with vLLM's own builders and kernels unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from vllm.v1.attention.backend import CommonAttentionMetadata
from vllm.v1.worker.utils import AttentionGroup

from asl_vllm.engine.kv_offsets import KVOffsets


@dataclass(eq=False)
class OffsetAttentionGroup(AttentionGroup):
    kv_offsets: KVOffsets | None = None

    @classmethod
    def wrap(cls, group: AttentionGroup, kv_offsets: KVOffsets) -> OffsetAttentionGroup:
        return cls(**{item.name: getattr(group, item.name) for item in fields(group)}, kv_offsets=kv_offsets)

    def _with_kernel_block_table(
        self, common_attn_metadata: CommonAttentionMetadata, ubatch_idx: int = 0
    ) -> CommonAttentionMetadata:
        assert self.kv_offsets is not None
        shifted = self.kv_offsets.shift(self.kv_cache_group_id, common_attn_metadata)
        return super()._with_kernel_block_table(shifted, ubatch_idx)

    def build_unshifted(self, common_attn_metadata: CommonAttentionMetadata) -> Any:
        """Metadata whose rows already carry their offsets (the pruning layer loop builds its own)."""
        return self.get_metadata_builder().build(0, super()._with_kernel_block_table(common_attn_metadata))
