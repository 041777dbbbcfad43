"""Scheduler that returns a pruned request's freed head blocks to vLLM's block pool.

After a pruned prefill, every layer keeps its tokens in the tail slots [D, N) of
the request (`asl_vllm.budget`); the worker reports each layer's D on the step's
`ModelRunnerOutput`. A KV cache group's blocks [0, D / block_size) are freed
right after that step, D being the smallest offset among the group's layers
(one group per bucket of consecutive layers, `asl_vllm.engine.layer_groups`),
exactly as vLLM's sliding-window manager frees prefix blocks:
`_remove_blocks_in_range` puts the null block in their place, so block lists
keep their length and later allocation, preemption and freeing work unchanged.

Each request's decision report (`PruneDecision.report`) rides on its first and
its last `EngineCoreOutput` as `kv_transfer_params["kv_pruner"]`, the one
per-request field vLLM 0.32 carries from the engine to the API server and into
the OpenAI response (the last output is built in `_free_request`).
"""

from __future__ import annotations

from typing import Any

from vllm.v1.core.sched.scheduler import Scheduler

from asl_vllm.config import from_vllm_config
from asl_vllm.engine.decisions import REPORT_KEY, PruneDecision
from asl_vllm.engine.layer_groups import group_block_bytes
from asl_vllm.engine.model_runner import DECISIONS_ATTR
from asl_vllm.request_config import requested_pruner


class PruningScheduler(Scheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pruner_config = from_vllm_config(self.vllm_config)
        # Report of each unfinished request, for its last output.
        self._pruner_reports: dict[str, dict[str, object]] = {}

    def update_from_output(self, scheduler_output: Any, model_runner_output: Any) -> Any:
        outputs = super().update_from_output(scheduler_output, model_runner_output)
        step_decisions = getattr(model_runner_output, DECISIONS_ATTR, None) or ()
        decisions = {decision.req_id: decision for decision in step_decisions}
        for decision in decisions.values():
            request = self.requests.get(decision.req_id)
            if request is not None and not request.is_finished():
                self._free_pruned_head(decision)
                if decision.req_id in self._pruner_reports:  # re-prefilled after preemption
                    self._pruner_reports[decision.req_id] = decision.report()
            decision.log()
        if scheduler_output.scheduled_new_reqs:
            self._report_new_requests(scheduler_output.scheduled_new_reqs, decisions, outputs)
        return outputs

    def _report_new_requests(
        self, new_requests: list[Any], decisions: dict[str, PruneDecision], outputs: dict[int, Any]
    ) -> None:
        """Put each new request's report on its first output and keep it for its last."""
        first_outputs = {output.request_id: output for batch in outputs.values() for output in batch.outputs}
        for new in new_requests:
            if new.sampling_params is None:
                continue
            decision = decisions.get(new.req_id) or PruneDecision(
                req_id=new.req_id,
                pruner=requested_pruner(self.pruner_config, new.sampling_params),
                num_prompt_tokens=len(new.prompt_token_ids or ()),
            )
            report = decision.report()
            output = first_outputs.get(new.req_id)
            if output is not None:
                output.kv_transfer_params = {**(output.kv_transfer_params or {}), REPORT_KEY: report}
            request = self.requests.get(new.req_id)
            if request is not None and not request.is_finished():
                self._pruner_reports[new.req_id] = report

    def _free_request(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        kv_transfer_params, ec_transfer_params = super()._free_request(request, *args, **kwargs)
        report = self._pruner_reports.pop(request.request_id, None)
        if report is not None:
            kv_transfer_params = {**(kv_transfer_params or {}), REPORT_KEY: report}
        return kv_transfer_params, ec_transfer_params

    def _free_pruned_head(self, decision: PruneDecision) -> None:
        """Free, per KV cache group, the head blocks none of its layers reads any more."""
        managers = self.kv_cache_manager.coordinator.single_type_managers
        groups = self.kv_cache_config.kv_cache_groups
        freed = []
        for manager, offset in zip(managers, decision.group_offsets, strict=True):
            before = manager.block_pool.get_num_free_blocks()
            manager._remove_blocks_in_range(decision.req_id, 0, offset // manager.block_size)
            freed.append(manager.block_pool.get_num_free_blocks() - before)
        decision.freed_blocks = sum(freed)
        decision.freed_blocks_per_group = freed
        decision.freed_kv_bytes = sum(count * group_block_bytes(group) for count, group in zip(freed, groups))
