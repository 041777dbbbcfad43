"""Pruned requests under KV pressure (preemption, recompute) and aborts: complete answers, no leaked block."""

from __future__ import annotations

import pytest
from vllm.inputs import TokensPrompt

from tests.engine.helpers import (
    blocks_held,
    free_blocks,
    greedy,
    haystack_tokens,
    run_counting_preemptions,
    scheduler,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_pool(engines):
    """40 blocks of 128 tokens: three 1.5k-token requests decoding 600 tokens each cannot all fit."""
    return engines(kv_pruner="asl", kv_budget=1024, num_gpu_blocks_override=40, max_num_seqs=4, max_model_len=4096)


def test_preempted_pruned_requests_finish_complete(small_pool):
    engine = small_pool.llm_engine
    start_free = free_blocks(small_pool)
    for index in range(3):
        prompt = haystack_tokens(small_pool, 1500, salt=f"Pressure {index}. ")
        engine.add_request(f"pressure-{index}", TokensPrompt(prompt_token_ids=prompt), greedy(600, ignore_eos=True))
    lengths, preempted = run_counting_preemptions(small_pool)
    assert preempted > 0, "the pool was meant to force a preemption"
    assert lengths == {f"pressure-{index}": 600 for index in range(3)}
    assert free_blocks(small_pool) == start_free


@pytest.mark.parametrize("steps_before_abort", [1, 4])
def test_abort_after_prefill_or_mid_decode_returns_every_block(small_pool, steps_before_abort):
    engine = small_pool.llm_engine
    start_free = free_blocks(small_pool)
    prompt = haystack_tokens(small_pool, 3000, salt=f"Abort {steps_before_abort}. ")
    engine.add_request("aborted", TokensPrompt(prompt_token_ids=prompt), greedy(50, ignore_eos=True))
    for _ in range(steps_before_abort):
        engine.step()
    assert 0 < blocks_held(small_pool, "aborted") < 24  # pruned: fewer than the prompt's 24 blocks
    internal = next(key for key in scheduler(small_pool).requests)
    engine.abort_request([internal], internal=True)
    while engine.has_unfinished_requests():
        engine.step()
    assert free_blocks(small_pool) == start_free
