"""The scheduler's one decision per prefill: whether it is pruned, with which settings and which auto budget."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from vllm import SamplingParams

from asl_vllm.config import PrunerConfig
from asl_vllm.engine.prefill_plan import PrefillPlan, PrefillPlanner

NUM_LAYERS = 30
FIXED = PrunerConfig(pruner="asl", kv_budget=1024).resolve(NUM_LAYERS)
AUTO = PrunerConfig(pruner="snapkv", kv_budget="auto").resolve(NUM_LAYERS)
GEMFILTER = PrunerConfig(pruner="gemfilter").resolve(NUM_LAYERS)
PARAMS = SamplingParams(max_tokens=1)


def _planner(server: PrunerConfig, max_prefill_tokens: int = 8192) -> PrefillPlanner:
    return PrefillPlanner(server, NUM_LAYERS, max_prefill_tokens)


def _scheduled(req_id: str, params: SamplingParams, num_tokens: int, computed: int | None = None) -> SimpleNamespace:
    """A request as `schedule()` leaves it: `computed` tokens computed after the step (default: all of them)."""
    computed = num_tokens if computed is None else computed
    return SimpleNamespace(
        request_id=req_id, sampling_params=params, num_tokens=num_tokens, num_computed_tokens=computed
    )


def test_a_prompt_the_budget_cuts_is_planned_with_the_server_settings():
    plan = _planner(FIXED).plan(_scheduled("r", PARAMS, 5000), usage=0.0)
    assert plan == PrefillPlan("r", FIXED, 5000, keeps_scores=False)


def test_prompts_that_are_not_pruned_get_no_plan():
    planner = _planner(FIXED)
    assert planner.plan(_scheduled("short", PARAMS, 1000), usage=0.0) is None  # within the budget
    assert (
        planner.plan(_scheduled("logprobs", SamplingParams(max_tokens=1, prompt_logprobs=1), 5000), usage=0.0) is None
    )
    assert _planner(PrunerConfig().resolve(NUM_LAYERS)).plan(_scheduled("off", PARAMS, 5000), usage=0.0) is None


def test_per_request_settings_are_the_plan_s():
    planner = _planner(FIXED)
    lower = planner.plan(
        _scheduled("lower", SamplingParams(max_tokens=1, extra_args={"kv_budget": 512}), 5000), usage=0.0
    )
    assert lower is not None and lower.config.kv_budget == 512
    off = SamplingParams(max_tokens=1, extra_args={"kv_pruner": "none"})
    assert planner.plan(_scheduled("off", off, 5000), usage=0.0) is None


def test_an_auto_budget_is_chosen_from_the_usage_and_keeps_scores():
    planner = _planner(AUTO)
    idle = planner.plan(_scheduled("idle", PARAMS, 5000), usage=0.2)
    assert idle is not None and idle.keeps_scores and idle.config.kv_budget is None
    full = planner.plan(_scheduled("full", PARAMS, 5000), usage=0.95)
    assert full is not None and full.config.kv_budget == AUTO.budget_min == 1024
    between = planner.plan(_scheduled("between", PARAMS, 5000), usage=0.7)
    assert between is not None and between.config.kv_budget == 1024 + round((5000 - 1024) * 0.2 / 0.4)
    # The plan's config is a concrete one: the worker reads one budget whatever the server's mode.
    assert not between.config.budget_auto and between.config.budget_min == 1024


def test_a_selecting_pruner_s_auto_budget_is_at_most_what_it_selects():
    asl = PrunerConfig(pruner="asl", kv_budget="auto").resolve(NUM_LAYERS)
    plan = _planner(asl).plan(_scheduled("r", PARAMS, 5000), usage=0.7)
    assert plan is not None and plan.config.kv_budget == asl.select_k == 2048


def test_a_two_pass_prompt_one_step_cannot_hold_is_served_unpruned_and_logged_once(caplog):
    # A re-run embeds the selected tokens, which a step holding only the last chunk does not have.
    planner = _planner(GEMFILTER, max_prefill_tokens=4096)
    with caplog.at_level(logging.INFO, logger="vllm.asl_vllm"):
        assert planner.config("long", PARAMS, 5000) is None
        assert planner.plan(_scheduled("long", PARAMS, 5000), usage=0.0) is None
    assert sum("served unpruned" in record.message for record in caplog.records) == 1
    assert planner.config("fits", PARAMS, 4000) == GEMFILTER


def test_a_two_pass_prompt_waits_for_a_step_that_runs_it_whole():
    planner = _planner(GEMFILTER)
    assert planner.tokens_to_schedule(_scheduled("r", PARAMS, 5000, computed=0), 2048) == 0
    assert planner.tokens_to_schedule(_scheduled("r", PARAMS, 5000, computed=0), 5000) == 5000


def test_a_prompt_longer_than_a_step_is_planned_at_its_last_chunk():
    planner = _planner(FIXED, max_prefill_tokens=2048)
    assert planner.plan(_scheduled("r", PARAMS, 5000, computed=2048), usage=0.0) is None
    assert planner.plan(_scheduled("r", PARAMS, 5000, computed=4096), usage=0.0) is None
    plan = planner.plan(_scheduled("r", PARAMS, 5000), usage=0.0)
    assert plan == PrefillPlan("r", FIXED, 5000, prefill_steps=3)
    # Its decode steps are not prefills.
    assert planner.plan(_scheduled("r", PARAMS, 5001), usage=0.0) is None


def test_the_last_chunk_keeps_the_window():
    planner = _planner(FIXED, max_prefill_tokens=2048)
    window = FIXED.window
    # vLLM's chunk would leave 10 tokens: the chunk stops a window before the end instead.
    assert planner.tokens_to_schedule(_scheduled("r", PARAMS, 2058, computed=0), 2048) == 2058 - window
    assert planner.tokens_to_schedule(_scheduled("r", PARAMS, 5000, computed=0), 2048) == 2048
    assert planner.tokens_to_schedule(_scheduled("r", PARAMS, 5000, computed=4096), 904) == 904
    # Unpruned prompts are chunked as vLLM chunks them.
    short = _scheduled("short", PARAMS, 1000, computed=0)
    assert planner.tokens_to_schedule(short, 990) == 990


def test_settings_are_resolved_once_until_the_request_is_forgotten():
    planner = _planner(FIXED)
    assert planner.config("r", PARAMS, 5000) == FIXED
    # Resolved once: the same answer whatever is asked later, until it finishes or is preempted.
    assert planner.config("r", PARAMS, 100) == FIXED
    planner.forget("r")
    assert planner.config("r", PARAMS, 100) is None
