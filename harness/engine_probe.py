"""Reading a running in-process engine: its scheduler, block pool and pruner decisions."""

from __future__ import annotations

from typing import Any

from asl_vllm.engine.layer_groups import group_block_bytes
from asl_vllm.vllm_compat.kv_cache_managers import group_managers


def scheduler(llm: Any) -> Any:
    return llm.llm_engine.engine_core.engine_core.scheduler


def free_blocks(llm: Any) -> int:
    return scheduler(llm).kv_cache_manager.block_pool.get_num_free_blocks()


def block_size(llm: Any) -> int:
    return group_managers(scheduler(llm).kv_cache_manager)[0].block_size


def external_id(internal_id: str) -> str:
    """vLLM appends "-<random suffix>" to the id a caller gives `add_request`."""
    return internal_id.rsplit("-", 1)[0]


def internal_id(llm: Any, req_id: str) -> str:
    return next(key for key in scheduler(llm).requests if external_id(key) == req_id)


def blocks_held_per_group(llm: Any, req_id: str) -> list[int]:
    """The request's non-null blocks in each KV cache group (one group per layer bucket)."""
    key = internal_id(llm, req_id)
    managers = group_managers(scheduler(llm).kv_cache_manager)
    return [sum(1 for block in manager.req_to_blocks.get(key, []) if not block.is_null) for manager in managers]


def blocks_held(llm: Any, req_id: str) -> int:
    """Pool blocks the request holds, all groups together."""
    return sum(blocks_held_per_group(llm, req_id))


def kv_bytes_held(llm: Any, req_id: str) -> int:
    """KV bytes the request holds: comparable across group layouts, unlike block counts."""
    groups = scheduler(llm).kv_cache_config.kv_cache_groups
    return sum(
        count * group_block_bytes(group)
        for count, group in zip(blocks_held_per_group(llm, req_id), groups, strict=True)
    )


def layers_per_group(llm: Any) -> list[int]:
    return [len(group.layer_names) for group in scheduler(llm).kv_cache_config.kv_cache_groups]


def decisions(llm: Any) -> dict[str, dict[str, Any]]:
    """Worker-side decisions since the last call, by the caller's request id."""
    (made,) = llm.collective_rpc("take_pruner_decisions")
    return {external_id(decision["req_id"]): decision for decision in made}
