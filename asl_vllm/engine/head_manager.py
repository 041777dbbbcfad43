"""The KV cache manager that returns a pruned request's head blocks to vLLM's block pool.

After a pruning prefill, every layer of a KV cache group reads a request's KV
from slot D_g on (`asl_vllm.engine.kv_offsets`); blocks [0, D_g / block_size)
are never read again. `free_head` frees them at once, the way vLLM's
sliding-window and R-SWA managers free blocks outside their window: the null
block takes each one's place, so block lists keep their length and allocation,
preemption and freeing work unchanged (a finished or preempted request frees
the rest). It is the one way the scheduler frees blocks, after a decision and
when it shrinks a running request. The manager is registered for
`LayerBucketSpec`, the spec every decoder layer of a pruning engine carries,
through vLLM's `KVCacheSpecRegistry` (`asl_vllm.vllm_compat.kv_cache_managers`).
"""

from __future__ import annotations

from typing import Any

from asl_vllm.engine.layer_groups import LayerBucketSpec
from asl_vllm.vllm_compat.kv_cache_managers import BlockFreeingManager, register_full_attention_manager


class PrunedHeadManager(BlockFreeingManager):
    def free_head(self, request_id: str, first_slot: int) -> int:
        """The request's layers of this group read slots [first_slot, ...) only: free the blocks before it.

        Blocks freed earlier stay freed. Returns the number of blocks back in the pool."""
        assert first_slot % self.block_size == 0, "a pruned head is whole blocks"
        return self.free_blocks(request_id, 0, first_slot // self.block_size)


def register(vllm_config: Any) -> None:
    """Make vLLM manage `LayerBucketSpec` groups with `PrunedHeadManager` (idempotent)."""
    register_full_attention_manager(vllm_config, LayerBucketSpec, PrunedHeadManager)
