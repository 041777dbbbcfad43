"""vLLM's per-group KV cache managers: reaching them, registering one for a spec, freeing a range of blocks.

vLLM 0.32-0.33 (vllm/v1/core/):
- `KVCacheManager.coordinator.single_type_managers` (kv_cache_manager.py,
  kv_cache_coordinator.py): one `SingleTypeKVCacheManager` per KV cache group,
  in group order; the coordinator is not public API.
- `SingleTypeKVCacheManager._remove_blocks_in_range`
  (single_type_kv_cache_manager.py): frees blocks [first, last) of a request and
  puts the null block in their place, so block lists keep their length; the
  sliding-window and R-SWA managers free blocks outside their window with it.
  It walks the range from its end and stops at the first null block, so a
  range freed before (or the head of one) frees nothing again.
  A finished request's `pop_blocks_for_free` returns its blocks for the pool to
  free: on 0.32 with the leading null blocks, from 0.33 without them
  (`trim_null_head`). The pool skips null blocks either way, so the blocks
  freed are the same, and the plugin never reads the list.
- `SingleTypeKVCacheManager.block_pool` (single_type_kv_cache_manager.py), the
  shared `BlockPool` (block_pool.py): `free_blocks` counts what it returned by
  the pool's `get_num_free_blocks()` before and after.
- `KVCacheSpecRegistry._ensure_registered` (vllm/v1/kv_cache_spec_registry.py):
  vLLM registers its built-in specs on the registry's first use; that must
  happen before a plugin registers its own (the public `register`), or the
  built-ins would be skipped.
"""

from __future__ import annotations

from typing import Any

from vllm.v1.core.single_type_kv_cache_manager import FullAttentionManager
from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheSpec
from vllm.v1.kv_cache_spec_registry import KVCacheSpecRegistry


class BlockFreeingManager(FullAttentionManager):
    """vLLM's full-attention manager that can also free a range of a request's blocks."""

    def free_blocks(self, request_id: str, first_block: int, last_block: int) -> int:
        """Return the request's blocks [first_block, last_block) to the pool, null blocks in their place.

        Blocks already freed (null) are skipped, so freeing a range again, or a shorter one, frees nothing.
        Returns the number of blocks back in the pool (`block_pool.get_num_free_blocks()` before and after)."""
        before = self.block_pool.get_num_free_blocks()
        self._remove_blocks_in_range(request_id, first_block, last_block)
        return self.block_pool.get_num_free_blocks() - before


def register_full_attention_manager(
    vllm_config: Any, spec_class: type[KVCacheSpec], manager_class: type[BlockFreeingManager]
) -> None:
    """Make vLLM manage KV cache groups of `spec_class` (a full-attention spec) with `manager_class` (idempotent)."""
    KVCacheSpecRegistry._ensure_registered(vllm_config)
    KVCacheSpecRegistry.register(spec_class, manager_class, uniform_type_base_spec=FullAttentionSpec)


def group_managers(kv_cache_manager: Any) -> list[Any]:
    """The scheduler's `SingleTypeKVCacheManager` of each KV cache group, in group order."""
    return list(kv_cache_manager.coordinator.single_type_managers)
