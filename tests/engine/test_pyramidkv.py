"""`--kv-pruner pyramidkv` on the embedded model: per-group budgets falling with depth, against full KV."""

from __future__ import annotations

import math

import pytest
from vllm.inputs import TokensPrompt

from asl_vllm.budget import tail_offset
from asl_vllm.pruners.pyramidkv import pyramid_keeps
from tests.engine import helpers

pytestmark = pytest.mark.slow

BUDGET = 1024
NUM_TOKENS = 4000
NEEDLE = "The special magic number is 7341928."


def test_4k_needle_groups_keep_a_pyramid_of_blocks_and_answer_as_full_kv(engines):
    pyramid = engines(kv_pruner="pyramidkv", kv_budget=BUDGET)
    prompt = helpers.haystack_tokens(pyramid, NUM_TOKENS, needle=NEEDLE, depth=0.5)
    # A budget with per-group budgets keeps the no-budget default: 10 groups of 3 layers.
    assert helpers.layers_per_group(pyramid) == [3] * 10
    bs = helpers.block_size(pyramid)
    engine = pyramid.llm_engine
    start_free = helpers.free_blocks(pyramid)
    helpers.decisions(pyramid)
    engine.add_request("pyramid", TokensPrompt(prompt_token_ids=prompt), helpers.greedy(12))
    engine.step()  # the whole prefill runs in one step
    decision = helpers.decisions(pyramid)["pyramid"]
    keeps = pyramid_keeps(NUM_TOKENS, BUDGET, bs, 10, helpers.scheduler(pyramid).pruner_config.window)
    assert decision["group_offsets"] == [NUM_TOKENS - keep for keep in keeps]
    held = helpers.blocks_held_per_group(pyramid, "pyramid")
    full = math.ceil(NUM_TOKENS / bs)
    assert held == [full - (NUM_TOKENS - keep) // bs for keep in keeps]
    assert held == sorted(held, reverse=True) and held[0] > held[-1]
    # The same blocks in all as --kv-budget on every layer would hold.
    assert sum(held) == 10 * (full - tail_offset(NUM_TOKENS, BUDGET, bs) // bs)
    assert start_free - helpers.free_blocks(pyramid) == sum(held)
    answer: list[int] = []
    while engine.has_unfinished_requests():
        for output in engine.step():
            if output.finished:
                answer = list(output.outputs[0].token_ids)
    assert len(answer) > 0
    assert helpers.free_blocks(pyramid) == start_free

    full_kv = engines()
    expected = helpers.run_requests(full_kv, {"full": prompt}, {"full": helpers.greedy(12)})["full"]
    tokenizer = pyramid.get_tokenizer()
    assert "7341928" in tokenizer.decode(expected)
    assert "7341928" in tokenizer.decode(answer), (tokenizer.decode(answer), tokenizer.decode(expected))
