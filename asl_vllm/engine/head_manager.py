"""The KV cache manager that returns a pruned request's head blocks to vLLM's block pool.

After a pruning prefill, every layer of a KV cache group reads a request's KV
from slot D_g on (`asl_vllm.engine.kv_offsets`); blocks [0, D_g / block_size)
are never read again. This manager frees them the way vLLM's sliding-window and
R-SWA managers free blocks outside their window: `remove_skipped_blocks`, which
vLLM calls before it allocates a request's next slots, puts the null block in
their place, so block lists keep their length and allocation, preemption and
freeing work unchanged. It is registered for `LayerBucketSpec`, the spec every
decoder layer of a pruning engine carries, through vLLM's
`KVCacheSpecRegistry` (`asl_vllm.vllm_compat.kv_cache_managers`).
"""

from __future__ import annotations

from typing import Any

from asl_vllm.engine.layer_groups import LayerBucketSpec
from asl_vllm.vllm_compat.kv_cache_managers import BlockFreeingManager, register_full_attention_manager


class PrunedHeadManager(BlockFreeingManager):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # First slot each pruned request's layers of this group still read.
        self.head_offsets: dict[str, int] = {}

    def skip_head(self, request_id: str, offset: int) -> None:
        """Record that the request's layers of this group read slots [offset, ...) only."""
        assert offset % self.block_size == 0, "a pruned head is whole blocks"
        if offset:
            self.head_offsets[request_id] = offset
        else:
            self.head_offsets.pop(request_id, None)

    def remove_skipped_blocks(
        self, request_id: str, processed_computed_tokens: int, num_prompt_tokens: int | None = None
    ) -> None:
        super().remove_skipped_blocks(request_id, processed_computed_tokens, num_prompt_tokens)
        offset = self.head_offsets.get(request_id)
        if offset:
            self.free_blocks(request_id, 0, offset // self.block_size)

    def pop_blocks_for_free(self, request_id: str) -> list[Any]:
        """A finished or preempted request forgets its head: a recompute prunes afresh."""
        self.head_offsets.pop(request_id, None)
        return super().pop_blocks_for_free(request_id)


def register(vllm_config: Any) -> None:
    """Make vLLM manage `LayerBucketSpec` groups with `PrunedHeadManager` (idempotent)."""
    register_full_attention_manager(vllm_config, LayerBucketSpec, PrunedHeadManager)
