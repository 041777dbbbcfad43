"""--kv-budget auto on the real engine: full KV while the pool has room, shrinks instead of preemptions."""

from __future__ import annotations

from typing import Any

import pytest
from vllm.inputs import TokensPrompt

from asl_vllm.report_key import REPORT_KEY
from tests.engine.helpers import free_blocks, greedy, haystack_tokens, run_requests, scheduler

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def auto_pool(engines):
    """Room for 40 blocks of 128 tokens in each of the 10 KV cache groups; budgets between 50 % and 90 % usage."""
    return engines(
        kv_pruner="asl",
        kv_budget="auto",
        kv_budget_min=256,
        kv_budget_auto_low=0.5,
        kv_budget_auto_high=0.9,
        num_gpu_blocks_override=400,
        max_num_seqs=4,
        max_model_len=4096,
    )


class StepLog:
    """Counts the tokens the engine computes (prefill and decode) and the preemptions, step by step."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.computed_tokens = 0
        self.preemptions = 0
        self.reports: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, list[int]] = {}
        sched = scheduler(llm)
        schedule = sched.schedule

        def counting_schedule(*args: Any, **kwargs: Any) -> Any:
            output = schedule(*args, **kwargs)
            self.computed_tokens += output.total_num_scheduled_tokens
            self.preemptions += len(output.preempted_req_ids or ())
            return output

        sched.schedule = counting_schedule
        self._restore = lambda: delattr(sched, "schedule")

    def step(self) -> None:
        for output in self.llm.llm_engine.step():
            if output.kv_transfer_params and REPORT_KEY in output.kv_transfer_params:
                self.reports[output.request_id] = output.kv_transfer_params[REPORT_KEY]
            if output.finished:
                self.outputs[output.request_id] = list(output.outputs[0].token_ids)

    def run(self) -> None:
        try:
            while self.llm.llm_engine.has_unfinished_requests():
                self.step()
        finally:
            self._restore()


def test_a_pool_that_never_fills_keeps_full_kv_and_pruner_none_outputs(auto_pool):
    start_free = free_blocks(auto_pool)
    prompts = {f"roomy-{index}": haystack_tokens(auto_pool, 800, salt=f"Roomy {index}. ") for index in range(2)}
    log = StepLog(auto_pool)
    for req_id, prompt in prompts.items():
        auto_pool.llm_engine.add_request(req_id, TokensPrompt(prompt_token_ids=prompt), greedy(24, ignore_eos=True))
    log.run()
    for req_id in prompts:
        report = log.reports[req_id]
        assert report["kv_budget_auto"] and report["kv_budget"] is None and report["pool_usage"] <= 0.5
        assert report["kept_tokens"] == 800 and report["freed_blocks"] == 0 and not report["shrinks"]
    unpruned = run_requests(
        auto_pool,
        {f"none-{req_id}": prompt for req_id, prompt in prompts.items()},
        {f"none-{req_id}": greedy(24, ignore_eos=True, kv_pruner="none") for req_id in prompts},
    )
    assert {req_id: log.outputs[req_id] for req_id in prompts} == {
        req_id: unpruned[f"none-{req_id}"] for req_id in prompts
    }
    assert free_blocks(auto_pool) == start_free


def test_a_filling_pool_shrinks_running_requests_instead_of_preempting(auto_pool):
    """Three 1.5k-token prompts, admitted one step apart (pool usage 30 %, 60 %, 85 %), decode 600 tokens:
    they need 41 of the 40 blocks per group, so vLLM would preempt; auto shrinks the one with full KV instead."""
    engine = auto_pool.llm_engine
    start_free = free_blocks(auto_pool)
    prompts = {f"burst-{index}": haystack_tokens(auto_pool, 1500, salt=f"Burst {index}. ") for index in range(3)}
    log = StepLog(auto_pool)
    for req_id, prompt in prompts.items():
        engine.add_request(req_id, TokensPrompt(prompt_token_ids=prompt), greedy(600, ignore_eos=True))
        log.step()
    log.run()
    assert {req_id: len(tokens) for req_id, tokens in log.outputs.items()} == {req_id: 600 for req_id in prompts}
    budgets = [log.reports[req_id]["kv_budget"] for req_id in prompts]
    assert budgets[0] is None and budgets[1] > budgets[2] >= 256, budgets
    shrinks = [shrink for req_id in prompts for shrink in log.reports[req_id]["shrinks"]]
    assert shrinks and all(shrink["freed_blocks"] > 0 for shrink in shrinks)
    assert log.reports["burst-0"]["shrinks"], "the request with full KV holds the most blocks: shrunk first"
    assert sum(log.reports[req_id]["preemptions_avoided"] for req_id in prompts) >= 1
    assert log.preemptions == 0
    # No recompute: every prompt token and every decode input computed exactly once.
    assert log.computed_tokens == sum(len(prompt) + 600 - 1 for prompt in prompts.values())
    assert free_blocks(auto_pool) == start_free
    assert not scheduler(auto_pool)._shrinkable and not scheduler(auto_pool)._pressure_events


def test_a_shrunk_request_decodes_as_if_its_prefill_had_kept_that_budget(auto_pool):
    """Shrinking moves exactly the tokens a prefill budget keeps into exactly its slots: an 800-token request
    shrunk right after its prefill (full KV -> 416 tokens, half rounded to whole blocks) then decodes the same
    tokens as one prefilled with kv_budget 400 (which keeps 416); both decode only from their own KV."""
    engine = auto_pool.llm_engine
    start_free = free_blocks(auto_pool)
    prompt = haystack_tokens(auto_pool, 800, salt="Shrunk. ")
    log = StepLog(auto_pool)
    engine.add_request("shrunk", TokensPrompt(prompt_token_ids=prompt), greedy(16, ignore_eos=True))
    log.step()
    sched = scheduler(auto_pool)
    (request,) = sched.running
    assert sched.make_room(request)
    log.run()
    budgeted = run_requests(auto_pool, {"budgeted": prompt}, {"budgeted": greedy(16, ignore_eos=True, kv_budget=400)})
    report = log.reports["shrunk"]
    assert report["kv_budget"] is None and report["kept_tokens"] == 800
    assert report["shrinks"] == [{"kept_tokens": 416, "freed_blocks": 3 * 10}]
    assert log.outputs["shrunk"] == budgeted["budgeted"]
    assert log.computed_tokens == 800 + 16 - 1
    assert free_blocks(auto_pool) == start_free
