"""The scheduler's word to the worker about a step: declared fields of the step's SchedulerOutput."""

from __future__ import annotations

import dataclasses
import pickle

from vllm.v1.core.sched.output import SchedulerOutput

from asl_vllm.config import PrunerConfig
from asl_vllm.engine.prefill_plan import PrefillPlan
from asl_vllm.engine.step_plan import StepPlanOutput, step_plan, with_plan


def _output() -> SchedulerOutput:
    return SchedulerOutput.make_empty()


def test_a_step_with_nothing_to_say_keeps_vllm_s_output():
    output = _output()
    assert with_plan(output, {}, {}) is output
    assert step_plan(output) == ({}, {})


def test_the_plan_rides_on_a_copy_with_every_field_and_survives_pickle():
    output = _output()
    fixed = PrunerConfig(pruner="asl", kv_budget=1024).resolve(30)
    auto = PrunerConfig(pruner="snapkv", kv_budget="auto").resolve(30).with_budget(None)
    plans = {"a": PrefillPlan("a", fixed, 5000), "b": PrefillPlan("b", auto, 3000, keeps_scores=True)}
    carried = with_plan(output, plans, {"c": 640})
    assert isinstance(carried, StepPlanOutput)
    for item in dataclasses.fields(SchedulerOutput):
        assert getattr(carried, item.name) is getattr(output, item.name)
    assert step_plan(pickle.loads(pickle.dumps(carried))) == (plans, {"c": 640})
