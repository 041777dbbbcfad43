"""The scheduler's word to the worker under memory pressure: declared fields of the step's SchedulerOutput."""

from __future__ import annotations

import dataclasses
import pickle

from vllm.v1.core.sched.output import SchedulerOutput

from asl_vllm.engine.pressure_plan import PressurePlanOutput, step_plan, with_plan


def _output() -> SchedulerOutput:
    return SchedulerOutput.make_empty()


def test_a_step_with_nothing_to_say_keeps_vllm_s_output():
    output = _output()
    assert with_plan(output, {}, {}) is output
    assert step_plan(output) == ({}, {})


def test_the_plan_rides_on_a_copy_with_every_field_and_survives_pickle():
    output = _output()
    carried = with_plan(output, {"a": 1024, "b": None}, {"c": 640})
    assert isinstance(carried, PressurePlanOutput)
    for item in dataclasses.fields(SchedulerOutput):
        assert getattr(carried, item.name) is getattr(output, item.name)
    assert step_plan(pickle.loads(pickle.dumps(carried))) == ({"a": 1024, "b": None}, {"c": 640})
