"""Scheduler of a pruning engine: the plan of each prefill to prune, freed heads, decision reports.

Whether a request's prefill is pruned, and with which settings, is decided
here once (`PrefillPlanner`, `asl_vllm.engine.prefill_plan`). Prompts to prune
are chunked as vLLM chunks any prompt, except that the last chunk keeps at
least the window, which the decision needs (`prefill_tokens_to_schedule`, a
hook of `asl_vllm.vllm_compat.scheduler`; two-pass pruners keep their prompts
whole). The step that runs a prompt's last chunk carries its `PrefillPlan` to
the worker (`asl_vllm.engine.step_plan`), which prunes it as the plan says. A
preempted request is planned afresh for its recompute.

After a pruning prefill, every layer of KV cache group g keeps its tokens in
the tail slots [D_g, N) (`asl_vllm.budget`); the worker reports the offsets on
the step's `ModelRunnerOutput` (`asl_vllm.engine.decision_channel`), and each
group's `PrunedHeadManager` frees blocks [0, D_g / block_size) right away
(`_free_heads`).

With `--kv-budget auto` (`asl_vllm.pressure`), the budget of a prefill is
chosen from the pool's usage once the step that schedules it has allocated its
blocks, and is its plan's budget. When a running request cannot get its next
block, running auto-budget requests are shrunk in place (`make_room`, the one
holding the most blocks first) before vLLM preempts anything: the scheduler
frees their head blocks at once (`_free_heads` again), and the worker, told on
the next step's output, moves the kept tokens before that step's forward
(`asl_vllm.engine.shrinking`).

Each request's decision report (`PruneDecision.report`) rides on its first and
its last `EngineCoreOutput` as `kv_transfer_params["kv_pruner"]`, the one
per-request field vLLM 0.32 carries from the engine to the API server and into
the OpenAI response (the last one through `finished_request_params`). It is
added beside whatever a KV connector put there (its `request_finished` params),
never in their place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from asl_vllm.config import from_vllm_config
from asl_vllm.engine import head_manager
from asl_vllm.engine.decision_channel import step_decisions
from asl_vllm.engine.decisions import PruneDecision
from asl_vllm.engine.layer_groups import group_block_bytes
from asl_vllm.engine.prefill_plan import PrefillPlan, PrefillPlanner
from asl_vllm.engine.step_plan import with_plan
from asl_vllm.log import logger
from asl_vllm.pressure import shrunk_keep
from asl_vllm.report_key import REPORT_KEY
from asl_vllm.request_config import requested_pruner
from asl_vllm.vllm_compat.scheduler import SchedulerHooks
from asl_vllm.vllm_compat.scheduler_state import kv_group_managers, pool_usage, requests_by_id, running_requests


@dataclass
class ShrinkableRequest:
    """A running auto-budget request as the scheduler sees it: what it keeps and how far it may shrink."""

    num_prompt_tokens: int
    group_offsets: list[int]
    floor: int

    @property
    def kept(self) -> int:
        return self.num_prompt_tokens - min(self.group_offsets)


class PruningScheduler(SchedulerHooks):
    def __init__(self, *args: Any, vllm_config: Any, **kwargs: Any) -> None:
        head_manager.register(vllm_config)
        super().__init__(*args, vllm_config=vllm_config, **kwargs)
        self.pruner_config = from_vllm_config(self.vllm_config)
        threshold = self.scheduler_config.long_prefill_token_threshold
        self.prefill_planner = PrefillPlanner(
            self.pruner_config,
            self.vllm_config.model_config.hf_config.num_hidden_layers,
            max_prefill_tokens=min(self.max_num_scheduled_tokens, threshold or self.max_num_scheduled_tokens),
        )
        # Report of each unfinished request, for its first and its last output.
        self._pruner_reports: dict[str, dict[str, object]] = {}
        # Requests whose first output has not been sent yet (a chunked prefill's comes at its last chunk).
        self._first_output_pending: set[str] = set()
        # Auto budgets until the prefill's decision arrives: the pool usage each was chosen at, and its floor.
        self._auto_choices: dict[str, tuple[float, int]] = {}
        self._shrinkable: dict[str, ShrinkableRequest] = {}
        # Shrinks made since the last step was scheduled (while scheduling this one), for the worker.
        self._step_shrinks: dict[str, int] = {}
        # Per request: its shrinks and the preemptions avoided for it, added to its last report.
        self._pressure_events: dict[str, dict[str, Any]] = {}

    def schedule(self, *args: Any, **kwargs: Any) -> Any:
        output = super().schedule(*args, **kwargs)
        plans = self._plan_prefills(output)
        shrinks, self._step_shrinks = self._step_shrinks, {}
        return with_plan(output, plans, shrinks)

    def _plan_prefills(self, output: Any) -> dict[str, PrefillPlan]:
        """The plan of each prefill to prune whose last chunk (or whole prompt) this step runs.

        `schedule()` has advanced each request's computed tokens by its scheduled ones, and allocated the
        step's blocks: an auto budget is chosen from the pool's usage with the new prompts in it."""
        plans: dict[str, PrefillPlan] = {}
        usage = pool_usage(self)
        requests = requests_by_id(self)
        for req_id in output.num_scheduled_tokens:
            plan = self.prefill_planner.plan(requests[req_id], usage)
            if plan is None:
                continue
            plans[req_id] = plan
            if plan.keeps_scores:
                self._auto_choices[req_id] = (usage, plan.config.budget_min)
        return plans

    def make_room(self, request: Any) -> bool:
        """Shrink the running auto-budget request that holds the most prompt blocks to half its kept tokens."""
        managers = kv_group_managers(self)
        block_size = managers[0].block_size
        candidates = []
        for running in running_requests(self):
            state = self._shrinkable.get(running.request_id)
            if state is None or running.num_computed_tokens < state.num_prompt_tokens:
                continue
            keep = shrunk_keep(state.kept, state.num_prompt_tokens, state.floor, block_size)
            if keep is not None:
                candidates.append((state.kept, running.request_id, keep))
        if not candidates:
            return False
        kept, req_id, keep = max(candidates)
        state = self._shrinkable[req_id]
        first_slot = state.num_prompt_tokens - keep
        # A group whose head is already past the new first slot keeps it, as its layers do on the worker.
        state.group_offsets = [max(offset, first_slot) for offset in state.group_offsets]
        freed = sum(self._free_heads(req_id, state.group_offsets))
        self._step_shrinks[req_id] = first_slot
        self._events(req_id)["shrinks"].append({"kept_tokens": keep, "freed_blocks": freed})
        logger.info(
            "asl-vllm: shrank request %s from %d to %d kept prompt tokens (freed %d blocks) so that request %s "
            "gets its next block without a preemption",
            req_id,
            kept,
            keep,
            freed,
            request.request_id,
        )
        return True

    def room_made(self, request: Any) -> None:
        self._events(request.request_id)["preemptions_avoided"] += 1

    def _events(self, req_id: str) -> dict[str, Any]:
        return self._pressure_events.setdefault(req_id, {"shrinks": [], "preemptions_avoided": 0})

    def prefill_tokens_to_schedule(self, request: Any, num_new_tokens: int) -> int:
        """vLLM's chunk, clipped so that a prompt to prune keeps its window for its last chunk (`PrefillPlanner`)."""
        return self.prefill_planner.tokens_to_schedule(request, num_new_tokens)

    def request_preempted(self, request: Any) -> None:
        """Its recompute is planned afresh (its prompt now holds its output too) and shrinks only once pruned."""
        self.prefill_planner.forget(request.request_id)
        self._auto_choices.pop(request.request_id, None)
        self._shrinkable.pop(request.request_id, None)

    def update_from_output(self, scheduler_output: Any, model_runner_output: Any) -> Any:
        # Decisions first: a request vLLM finishes in this step (its first token may be its last) leaves with them.
        decisions = {decision.req_id: decision for decision in step_decisions(model_runner_output)}
        for decision in decisions.values():
            request = requests_by_id(self).get(decision.req_id)
            choice = self._auto_choices.pop(decision.req_id, None) if decision.budget_auto else None
            if choice is not None:
                decision.pool_usage = choice[0]
            if request is not None and not request.is_finished():
                self._free_pruned_head(request, decision)
                if choice is not None:
                    self._shrinkable[decision.req_id] = ShrinkableRequest(
                        decision.num_prompt_tokens, list(decision.group_offsets), floor=choice[1]
                    )
                if decision.req_id in self._pruner_reports:  # chunked, or re-prefilled after preemption
                    self._pruner_reports[decision.req_id] = decision.report()
            decision.log()
        outputs = super().update_from_output(scheduler_output, model_runner_output)
        if scheduler_output.scheduled_new_reqs:
            self._keep_new_reports(scheduler_output.scheduled_new_reqs, decisions)
        if self._first_output_pending:
            self._report_first_outputs(outputs)
        return outputs

    def _keep_new_reports(self, new_requests: list[Any], decisions: dict[str, PruneDecision]) -> None:
        """Keep each new request's report (its decision's, or unpruned until one arrives) for its first output,
        which a chunked prefill sends steps later, and for its last."""
        for new in new_requests:
            if new.sampling_params is None:
                continue
            decision = decisions.get(new.req_id) or PruneDecision(
                req_id=new.req_id,
                pruner=requested_pruner(self.pruner_config, new.sampling_params),
                num_prompt_tokens=len(new.prompt_token_ids or ()),
            )
            self._pruner_reports[new.req_id] = decision.report()
            self._first_output_pending.add(new.req_id)

    def _report_first_outputs(self, outputs: dict[int, Any]) -> None:
        """Put its report on each request's first output; one that is also its last (a request done in one step)
        takes it with it."""
        for batch in outputs.values():
            for output in batch.outputs:
                if output.request_id not in self._first_output_pending:
                    continue
                self._first_output_pending.discard(output.request_id)
                report = self._pruner_reports.get(output.request_id)
                if output.finished:
                    self._pruner_reports.pop(output.request_id, None)
                if report is not None:
                    output.kv_transfer_params = {**(output.kv_transfer_params or {}), REPORT_KEY: report}

    def finished_request_params(self, request: Any, kv_transfer_params: dict[str, Any] | None) -> dict[str, Any] | None:
        """The connector's params of a finished request, with its report beside them."""
        self.prefill_planner.forget(request.request_id)
        self._first_output_pending.discard(request.request_id)
        self._auto_choices.pop(request.request_id, None)
        self._shrinkable.pop(request.request_id, None)
        events = self._pressure_events.pop(request.request_id, {})
        report = self._pruner_reports.pop(request.request_id, None)
        if report is None:
            return kv_transfer_params
        return {**(kv_transfer_params or {}), REPORT_KEY: {**report, **events}}

    def _free_heads(self, req_id: str, first_slots: Sequence[int]) -> list[int]:
        """Free the request's blocks before `first_slots[g]` in each KV cache group g: the blocks freed per group."""
        managers = kv_group_managers(self)
        return [manager.free_head(req_id, slot) for manager, slot in zip(managers, first_slots, strict=True)]

    def _free_pruned_head(self, request: Any, decision: PruneDecision) -> None:
        """Free the head blocks the decision's offsets leave unread, and count them in the decision."""
        groups = self.kv_cache_config.kv_cache_groups
        freed = self._free_heads(request.request_id, decision.group_offsets)
        decision.freed_blocks = sum(freed)
        decision.freed_blocks_per_group = freed
        # A block's page holds one rank's KV heads; every tensor-parallel rank frees the same blocks.
        decision.freed_kv_bytes = self.vllm_config.parallel_config.tensor_parallel_size * sum(
            count * group_block_bytes(group) for count, group in zip(freed, groups, strict=True)
        )
