"""What the scheduler tells the worker about memory pressure: on the step's `SchedulerOutput`, as declared fields.

The mirror of `asl_vllm.engine.decision_channel`: vLLM 0.32 hands every worker
the step's `SchedulerOutput` (pickled whole by the multiprocessing executor's
shared-memory queue, passed as is by the uniprocess one), so a subclass with
declared fields carries, per step, the auto budgets chosen for the prefills it
schedules and the requests to shrink before its forward.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from vllm.v1.core.sched.output import SchedulerOutput


@dataclass
class PressurePlanOutput(SchedulerOutput):
    # Auto-budget prefills scheduled in this step: request -> chosen budget (None: full KV).
    kv_pruner_budgets: dict[str, int | None] = field(default_factory=dict)
    # Requests to shrink before this step's forward: request -> new first kept slot.
    kv_pruner_shrinks: dict[str, int] = field(default_factory=dict)


def with_plan(output: SchedulerOutput, budgets: dict[str, int | None], shrinks: dict[str, int]) -> SchedulerOutput:
    """`output` as it is when there is nothing to say, else a copy carrying the plan."""
    if not budgets and not shrinks:
        return output
    values = {item.name: getattr(output, item.name) for item in dataclasses.fields(SchedulerOutput)}
    return PressurePlanOutput(**values, kv_pruner_budgets=budgets, kv_pruner_shrinks=shrinks)


def step_plan(output: object) -> tuple[dict[str, int | None], dict[str, int]]:
    """(budgets, shrinks) of a step's scheduler output (empty for a step with no plan)."""
    if isinstance(output, PressurePlanOutput):
        return output.kv_pruner_budgets, output.kv_pruner_shrinks
    return {}, {}
