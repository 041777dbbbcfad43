"""The scheduler's one decision per prefill: whether it is pruned, with which settings and which auto budget."""

from __future__ import annotations

import logging

from vllm import SamplingParams

from asl_vllm.config import PrunerConfig
from asl_vllm.engine.prefill_plan import PrefillPlan, PrefillPlanner

NUM_LAYERS = 30
FIXED = PrunerConfig(pruner="asl", kv_budget=1024).resolve(NUM_LAYERS)
AUTO = PrunerConfig(pruner="snapkv", kv_budget="auto").resolve(NUM_LAYERS)
PARAMS = SamplingParams(max_tokens=1)


def _planner(server: PrunerConfig, max_prefill_tokens: int = 8192) -> PrefillPlanner:
    return PrefillPlanner(server, NUM_LAYERS, max_prefill_tokens)


def test_a_prompt_the_budget_cuts_is_planned_with_the_server_settings():
    plan = _planner(FIXED).plan("r", PARAMS, 5000, usage=0.0)
    assert plan == PrefillPlan("r", FIXED, 5000, keeps_scores=False)


def test_prompts_that_are_not_pruned_get_no_plan():
    planner = _planner(FIXED)
    assert planner.plan("short", PARAMS, 1000, usage=0.0) is None  # within the budget
    assert planner.plan("logprobs", SamplingParams(max_tokens=1, prompt_logprobs=1), 5000, usage=0.0) is None
    assert _planner(PrunerConfig().resolve(NUM_LAYERS)).plan("off", PARAMS, 5000, usage=0.0) is None


def test_per_request_settings_are_the_plan_s():
    planner = _planner(FIXED)
    lower = planner.plan("lower", SamplingParams(max_tokens=1, extra_args={"kv_budget": 512}), 5000, usage=0.0)
    assert lower is not None and lower.config.kv_budget == 512
    off = SamplingParams(max_tokens=1, extra_args={"kv_pruner": "none"})
    assert planner.plan("off", off, 5000, usage=0.0) is None


def test_an_auto_budget_is_chosen_from_the_usage_and_keeps_scores():
    planner = _planner(AUTO)
    idle = planner.plan("idle", PARAMS, 5000, usage=0.2)
    assert idle is not None and idle.keeps_scores and idle.config.kv_budget is None
    full = planner.plan("full", PARAMS, 5000, usage=0.95)
    assert full is not None and full.config.kv_budget == AUTO.budget_min == 1024
    between = planner.plan("between", PARAMS, 5000, usage=0.7)
    assert between is not None and between.config.kv_budget == 1024 + round((5000 - 1024) * 0.2 / 0.4)
    # The plan's config is a concrete one: the worker reads one budget whatever the server's mode.
    assert not between.config.budget_auto and between.config.budget_min == 1024


def test_a_selecting_pruner_s_auto_budget_is_at_most_what_it_selects():
    asl = PrunerConfig(pruner="asl", kv_budget="auto").resolve(NUM_LAYERS)
    plan = _planner(asl).plan("r", PARAMS, 5000, usage=0.7)
    assert plan is not None and plan.config.kv_budget == asl.select_k == 2048


def test_a_prompt_one_step_cannot_hold_is_served_unpruned_and_logged_once(caplog):
    planner = _planner(FIXED, max_prefill_tokens=4096)
    with caplog.at_level(logging.INFO, logger="vllm.asl_vllm"):
        assert planner.config("long", PARAMS, 5000) is None
        assert planner.plan("long", PARAMS, 5000, usage=0.0) is None
    assert sum("served unpruned" in record.message for record in caplog.records) == 1


def test_settings_are_resolved_once_until_the_request_is_forgotten():
    planner = _planner(FIXED)
    assert planner.config("r", PARAMS, 5000) == FIXED
    # Resolved once: the same answer whatever is asked later, until it finishes or is preempted.
    assert planner.config("r", PARAMS, 100) == FIXED
    planner.forget("r")
    assert planner.config("r", PARAMS, 100) is None
