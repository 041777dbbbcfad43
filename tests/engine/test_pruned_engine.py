"""`--kv-pruner asl` inside vLLM's engine, on the embedded model: outputs, decisions, blocks."""

from __future__ import annotations

import math

import pytest

from asl_vllm.budget import tail_offset
from tests.engine.helpers import (
    block_size,
    blocks_held,
    decisions,
    free_blocks,
    greedy,
    haystack_tokens,
    run_requests,
    scheduler,
)

pytestmark = pytest.mark.slow

BUDGET = 1024
NEEDLE = "The special magic number is 7341928."


@pytest.fixture(scope="module")
def full_kv(engines):
    return engines()


@pytest.fixture(scope="module")
def pruned(engines):
    return engines(kv_pruner="asl", kv_budget=BUDGET)


def test_short_prompts_match_unpruned_vllm(full_kv, pruned):
    prompts = {f"short-{n}": haystack_tokens(full_kv, n) for n in (64, 300, 900)}
    params = {req_id: greedy(24) for req_id in prompts}
    expected = run_requests(full_kv, prompts, params)
    decisions(pruned)
    got = run_requests(pruned, prompts, params)
    assert got == expected
    assert decisions(pruned) == {}


def test_6k_prompt_selection_layer_and_blocks(pruned):
    num_tokens = 6000
    prompt = haystack_tokens(pruned, num_tokens)
    engine = pruned.llm_engine
    config = scheduler(pruned).pruner_config
    bs = block_size(pruned)
    start_free = free_blocks(pruned)
    decisions(pruned)
    from vllm.inputs import TokensPrompt

    engine.add_request("six-k", TokensPrompt(prompt_token_ids=prompt), greedy(8))
    engine.step()  # the whole prefill runs in one step
    decision = decisions(pruned)["six-k"]
    layer = decision["selection_layer"]
    num_layers = len(decision["layer_offsets"])
    assert layer is None or config.min_layer + 1 <= layer <= num_layers - 1
    offset = tail_offset(num_tokens, BUDGET, bs)
    assert decision["layer_offsets"] == [offset] * num_layers
    assert blocks_held(pruned, "six-k") == math.ceil(num_tokens / bs) - offset // bs
    assert start_free - free_blocks(pruned) == blocks_held(pruned, "six-k")
    while engine.has_unfinished_requests():
        engine.step()
    assert free_blocks(pruned) == start_free


def test_mixed_concurrent_requests_return_every_block(pruned):
    start_free = free_blocks(pruned)
    lengths = [40, 700, 1500, 2500, 3300, 4100, 5000, 5900, 6800, 7600] * 2
    pruners = ["asl", "snapkv", "fastkv", "none"]
    prompts = {f"mix-{i}": haystack_tokens(pruned, n) for i, n in enumerate(lengths)}
    params = {req_id: greedy(6 + i % 5, kv_pruner=pruners[i % 4]) for i, req_id in enumerate(prompts)}
    outputs = run_requests(pruned, prompts, params)
    assert sorted(outputs) == sorted(prompts)
    assert all(len(outputs[req_id]) == params[req_id].max_tokens for req_id in prompts)
    assert free_blocks(pruned) == start_free


def test_needle_found_with_budget_where_full_kv_finds_it(full_kv, pruned):
    prompt = haystack_tokens(full_kv, 4000, needle=NEEDLE, depth=0.4)
    prompts = {"needle": prompt}
    params = {"needle": greedy(12)}
    tokenizer = full_kv.get_tokenizer()
    full_answer = tokenizer.decode(run_requests(full_kv, prompts, params)["needle"])
    assert "7341928" in full_answer
    decisions(pruned)
    pruned_answer = tokenizer.decode(run_requests(pruned, prompts, params)["needle"])
    assert decisions(pruned)["needle"]["layer_offsets"][0] > 0
    assert "7341928" in pruned_answer
