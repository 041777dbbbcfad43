"""Scheduler that returns a pruned request's freed head blocks to vLLM's block pool.

After a pruned prefill, every layer keeps its tokens in the tail slots [D, N) of
the request (`asl_vllm.budget`); the worker reports each layer's D on the step's
`ModelRunnerOutput`. A KV cache group's blocks [0, D / block_size) are freed
right after that step, D being the smallest offset among the group's layers
(one group per bucket of consecutive layers, `asl_vllm.engine.layer_groups`), exactly as vLLM's sliding-window manager frees prefix blocks:
`_remove_blocks_in_range` puts the null block in their place, so block lists
keep their length and later allocation, preemption and freeing work unchanged.
"""

from __future__ import annotations

from typing import Any

from vllm.v1.core.sched.scheduler import Scheduler

from asl_vllm.config import from_vllm_config
from asl_vllm.engine.decisions import PruneDecision
from asl_vllm.engine.model_runner import DECISIONS_ATTR
from asl_vllm.log import logger


class PruningScheduler(Scheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pruner_config = from_vllm_config(self.vllm_config)

    def update_from_output(self, scheduler_output: Any, model_runner_output: Any) -> Any:
        outputs = super().update_from_output(scheduler_output, model_runner_output)
        for decision in getattr(model_runner_output, DECISIONS_ATTR, None) or ():
            request = self.requests.get(decision.req_id)
            if request is None or request.is_finished():
                continue
            freed = self._free_pruned_head(decision)
            decision.freed_blocks = sum(freed)
            groups = self.kv_cache_config.kv_cache_groups
            logger.info(
                "kv-pruner request=%s freed_blocks=%d freed_blocks_per_group=%s freed_kv_bytes=%d prompt_tokens=%d",
                decision.req_id,
                decision.freed_blocks,
                "/".join(map(str, freed)),
                sum(count * group_block_bytes(group) for count, group in zip(freed, groups)),
                decision.num_prompt_tokens,
            )
        return outputs

    def _free_pruned_head(self, decision: PruneDecision) -> list[int]:
        """Free, per KV cache group, the head blocks none of its layers reads any more."""
        freed = []
        managers = self.kv_cache_manager.coordinator.single_type_managers
        for manager, offset in zip(managers, decision.group_offsets, strict=True):
            before = manager.block_pool.get_num_free_blocks()
            manager._remove_blocks_in_range(decision.req_id, 0, offset // manager.block_size)
            freed.append(manager.block_pool.get_num_free_blocks() - before)
        return freed


def group_block_bytes(group: Any) -> int:
    """KV bytes one block of a KV cache group holds: one page per layer of the group."""
    return group.kv_cache_spec.page_size_bytes * len(group.layer_names)
