"""vLLM's attention group, with each pruned request's KV offsets applied to its group's metadata.

Every metadata build of a KV cache group (the step's, CUDA-graph capture's,
drafting's) passes through `shift_metadata`
(`asl_vllm.vllm_compat.attention_group`), which shifts each request's
block-table row and length by its group's offset, with vLLM's own builders and
kernels unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

from vllm.v1.attention.backend import CommonAttentionMetadata
from vllm.v1.worker.utils import AttentionGroup

from asl_vllm.engine.kv_offsets import KVOffsets
from asl_vllm.vllm_compat.attention_group import ShiftedAttentionGroup


@dataclass(eq=False)
class OffsetAttentionGroup(ShiftedAttentionGroup):
    kv_offsets: KVOffsets | None = None

    @classmethod
    def wrap(cls, group: AttentionGroup, kv_offsets: KVOffsets) -> OffsetAttentionGroup:
        return cls(**{item.name: getattr(group, item.name) for item in fields(group)}, kv_offsets=kv_offsets)

    def shift_metadata(self, common_attn_metadata: CommonAttentionMetadata, capture: bool) -> CommonAttentionMetadata:
        assert self.kv_offsets is not None
        return self.kv_offsets.shift(self.kv_cache_group_id, common_attn_metadata, capture)


def check_whole_blocks(groups: Iterable[OffsetAttentionGroup]) -> None:
    """Refuse a backend that splits the KV cache manager's blocks into smaller kernel blocks.

    The layer loop compacts, and the shrinker shrinks, KV through the manager's block ids and
    block size; against a cache shaped in kernel blocks those address the wrong
    tokens. Decode steps alone would be right (the shift precedes vLLM's mapping).
    """
    for group in groups:
        kernel = group.kernel_block_split()
        if kernel is not None:
            raise RuntimeError(
                f"KV pruning needs KV cache blocks that the attention backend reads whole: "
                f"{group.backend.get_name()} splits {group.kv_cache_spec.block_size}-token blocks into "
                f"{kernel}-token kernel blocks; pass --block-size {kernel}"
            )
