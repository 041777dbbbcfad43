"""Scheduler that returns a pruned request's freed head blocks to vLLM's block pool.

With a budget B, every layer of a pruned request keeps its tokens in slots
[D, N) after the prefill step (`asl_vllm.budget`), so blocks [0, D / block_size)
are freed right after that step, exactly as vLLM's sliding-window manager frees
prefix blocks: `_remove_blocks_in_range` puts the null block in their place, so
block lists keep their length and later allocation, preemption and freeing work
unchanged. The decision is recomputed here from the same per-request config as
in the worker, so no worker-to-scheduler message is needed.
"""

from __future__ import annotations

from typing import Any

from vllm.v1.core.sched.scheduler import Scheduler

from asl_vllm.budget import tail_offset
from asl_vllm.config import from_vllm_config
from asl_vllm.log import logger
from asl_vllm.request_config import prefill_prune_config


class PruningScheduler(Scheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pruner_config = from_vllm_config(self.vllm_config)
        self.pruner_num_layers = self.vllm_config.model_config.hf_config.num_hidden_layers
        self._prefilled: dict[str, int] = {}

    def schedule(self, *args: Any, **kwargs: Any) -> Any:
        output = super().schedule(*args, **kwargs)
        # Chunked prefill is off, so a request whose computed count equals this
        # step's tokens is prefilling its whole (possibly resumed) sequence now.
        self._prefilled = {
            req_id: num_tokens
            for req_id, num_tokens in output.num_scheduled_tokens.items()
            if self.requests[req_id].num_computed_tokens == num_tokens
        }
        return output

    def update_from_output(self, scheduler_output: Any, model_runner_output: Any) -> Any:
        outputs = super().update_from_output(scheduler_output, model_runner_output)
        prefilled, self._prefilled = self._prefilled, {}
        for req_id, num_tokens in prefilled.items():
            request = self.requests.get(req_id)
            if request is None or request.is_finished():
                continue
            self._free_pruned_head(req_id, request, num_tokens)
        return outputs

    def _free_pruned_head(self, req_id: str, request: Any, num_tokens: int) -> None:
        config = prefill_prune_config(self.pruner_config, request.sampling_params, num_tokens, self.pruner_num_layers)
        if config is None or config.kv_budget is None:
            return
        freed_blocks = 0
        for manager in self.kv_cache_manager.coordinator.single_type_managers:
            offset = tail_offset(num_tokens, config.kv_budget, manager.block_size)
            before = manager.block_pool.get_num_free_blocks()
            manager._remove_blocks_in_range(req_id, 0, offset // manager.block_size)
            freed_blocks += manager.block_pool.get_num_free_blocks() - before
        logger.info(
            "kv-pruner request=%s freed_blocks=%d prompt_tokens=%d budget=%d",
            req_id,
            freed_blocks,
            num_tokens,
            config.kv_budget,
        )
