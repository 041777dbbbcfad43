"""What the scheduler tells the worker about a step: on the step's `SchedulerOutput`, as declared fields.

The mirror of `asl_vllm.engine.decision_channel`: vLLM 0.32 hands every worker
(every tensor-parallel rank alike) the step's `SchedulerOutput`, pickled whole
by the multiprocessing executor's shared-memory queue and passed as is by the
uniprocess one, so a subclass with declared fields carries, per step, the plan
of each prefill it prunes (`asl_vllm.engine.prefill_plan`) and the requests to
shrink before its forward (`asl_vllm.engine.shrinking`). A step with neither,
every decode step among them, keeps vLLM's own output.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from vllm.v1.core.sched.output import SchedulerOutput

from asl_vllm.engine.prefill_plan import PrefillPlan


@dataclass
class StepPlanOutput(SchedulerOutput):
    # Prefills this step prunes: request -> its plan.
    kv_pruner_plans: dict[str, PrefillPlan] = field(default_factory=dict)
    # Requests to shrink before this step's forward: request -> new first kept slot.
    kv_pruner_shrinks: dict[str, int] = field(default_factory=dict)


def with_plan(output: SchedulerOutput, plans: dict[str, PrefillPlan], shrinks: dict[str, int]) -> SchedulerOutput:
    """`output` as it is when there is nothing to say, else a copy carrying the plan."""
    if not plans and not shrinks:
        return output
    values = {item.name: getattr(output, item.name) for item in dataclasses.fields(SchedulerOutput)}
    return StepPlanOutput(**values, kv_pruner_plans=plans, kv_pruner_shrinks=shrinks)


def step_plan(output: object) -> tuple[dict[str, PrefillPlan], dict[str, int]]:
    """(plans, shrinks) of a step's scheduler output (empty for a step with no plan)."""
    if isinstance(output, StepPlanOutput):
        return output.kv_pruner_plans, output.kv_pruner_shrinks
    return {}, {}
