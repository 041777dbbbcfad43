"""The one call that frees a pruned request's head, on vLLM's own block pool and manager, without an engine."""

from __future__ import annotations

import torch
from vllm.v1.core.block_pool import BlockPool

from asl_vllm.engine.head_manager import PrunedHeadManager
from asl_vllm.engine.layer_groups import LayerBucketSpec

BLOCK_SIZE, NUM_BLOCKS = 16, 32


def _manager() -> PrunedHeadManager:
    spec = LayerBucketSpec(block_size=BLOCK_SIZE, num_kv_heads=2, head_size=8, dtype=torch.float16)
    pool = BlockPool(num_gpu_blocks=NUM_BLOCKS, enable_caching=False, hash_block_size=BLOCK_SIZE)
    return PrunedHeadManager(
        spec, block_pool=pool, enable_caching=False, kv_cache_group_id=0, scheduler_block_size=BLOCK_SIZE
    )


def _held(manager: PrunedHeadManager, request_id: str) -> list[bool]:
    """Per block of the request: whether it still holds a pool block (False: the null block)."""
    return [not block.is_null for block in manager.req_to_blocks[request_id]]


def test_the_head_before_the_first_slot_goes_back_to_the_pool_and_null_blocks_keep_the_length():
    manager = _manager()
    manager.allocate_new_blocks("r", 10 * BLOCK_SIZE, 10 * BLOCK_SIZE)
    free = manager.block_pool.get_num_free_blocks()
    assert manager.free_head("r", 4 * BLOCK_SIZE) == 4
    assert manager.block_pool.get_num_free_blocks() == free + 4
    assert _held(manager, "r") == [False] * 4 + [True] * 6


def test_a_further_first_slot_frees_only_the_blocks_between_and_a_nearer_one_nothing():
    manager = _manager()
    manager.allocate_new_blocks("r", 10 * BLOCK_SIZE, 10 * BLOCK_SIZE)
    manager.free_head("r", 4 * BLOCK_SIZE)
    assert manager.free_head("r", 6 * BLOCK_SIZE) == 2  # a shrink
    assert manager.free_head("r", 6 * BLOCK_SIZE) == 0
    assert manager.free_head("r", 2 * BLOCK_SIZE) == 0  # a group already past the shrink
    assert manager.free_head("r", 0) == 0
    assert _held(manager, "r") == [False] * 6 + [True] * 4


def test_a_request_with_a_freed_head_frees_the_rest_when_it_finishes():
    manager = _manager()
    manager.allocate_new_blocks("r", 10 * BLOCK_SIZE, 10 * BLOCK_SIZE)
    manager.allocate_new_blocks("other", 3 * BLOCK_SIZE, 3 * BLOCK_SIZE)
    manager.free_head("r", 4 * BLOCK_SIZE)
    manager.free("r")
    # The pool's null block is never handed out: every other block is free but the other request's.
    assert manager.block_pool.get_num_free_blocks() == NUM_BLOCKS - 1 - 3
