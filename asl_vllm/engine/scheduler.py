"""Scheduler that returns a pruned request's freed head blocks to vLLM's block pool.

After a pruned prefill, every layer keeps its tokens in the tail slots [D, N) of
the request (`asl_vllm.budget`); the worker reports each layer's D on the step's
`ModelRunnerOutput`. A KV cache group's blocks [0, D / block_size) are freed
right after that step, D being the smallest offset among the group's layers,
exactly as vLLM's sliding-window manager frees prefix blocks:
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
            decision.freed_blocks = self._free_pruned_head(decision)
            logger.info(
                "kv-pruner request=%s freed_blocks=%d prompt_tokens=%d",
                decision.req_id,
                decision.freed_blocks,
                decision.num_prompt_tokens,
            )
        return outputs

    def _free_pruned_head(self, decision: PruneDecision) -> int:
        """Free, per KV cache group, the head blocks none of its layers reads any more."""
        freed_blocks = 0
        # One group holds every layer (the worker refuses anything else), so its offset is the smallest.
        offset = min(decision.layer_offsets, default=0)
        for manager in self.kv_cache_manager.coordinator.single_type_managers:
            before = manager.block_pool.get_num_free_blocks()
            manager._remove_blocks_in_range(decision.req_id, 0, offset // manager.block_size)
            freed_blocks += manager.block_pool.get_num_free_blocks() - before
        return freed_blocks
