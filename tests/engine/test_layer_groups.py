"""Without `--kv-budget`: layer buckets as KV cache groups, so layers after the selection layer free blocks."""

from __future__ import annotations

import math

import pytest
from vllm.inputs import TokensPrompt

from asl_vllm.budget import tail_offset
from tests.engine.helpers import (
    block_size,
    blocks_held_per_group,
    decisions,
    free_blocks,
    greedy,
    haystack_tokens,
    kv_bytes_held,
    layers_per_group,
    run_counting_preemptions,
    run_requests,
    scheduler,
)

pytestmark = pytest.mark.slow

SELECT_K = 1024


@pytest.fixture(scope="module")
def full_kv(engines):
    return engines()


@pytest.fixture(scope="module")
def grouped(engines):
    """The default layer groups (10 buckets of 3 layers on the 30-layer model); tau 0.5 selects on it."""
    return engines(kv_pruner="asl", asl_tau=0.5, asl_select_k=SELECT_K)


def test_default_groups_are_buckets_of_consecutive_layers(grouped):
    groups = scheduler(grouped).kv_cache_config.kv_cache_groups
    assert layers_per_group(grouped) == [3] * 10
    assert [int(name.split(".")[2]) for group in groups for name in group.layer_names] == list(range(30))


def test_6k_prompt_groups_after_the_selection_layer_free_their_head(full_kv, grouped):
    num_tokens = 6000
    prompt = haystack_tokens(grouped, num_tokens, salt="Groups. ")
    bs = block_size(grouped)
    config = scheduler(grouped).pruner_config
    engine = grouped.llm_engine
    start_free = free_blocks(grouped)
    decisions(grouped)
    engine.add_request("six-k", TokensPrompt(prompt_token_ids=prompt), greedy(4))
    # vLLM's offline token budget chunks the prompt; its last chunk prunes it.
    chunks = math.ceil(num_tokens / scheduler(grouped).max_num_scheduled_tokens)
    for _ in range(chunks):
        engine.step()
    decision = decisions(grouped)["six-k"]
    assert chunks > 1 and decision["prefill_steps"] == chunks
    layer = decision["selection_layer"]
    assert layer is not None and config.min_layer + 1 <= layer <= 29
    full = math.ceil(num_tokens / bs)
    freed = tail_offset(num_tokens, SELECT_K, bs) // bs
    first_layers = [3 * group for group in range(10)]
    expected = [full - freed if first > layer else full for first in first_layers]
    held = blocks_held_per_group(grouped, "six-k")
    assert held == expected
    assert freed > 0 and held[-1] < full
    assert start_free - free_blocks(grouped) == sum(held)
    # KV bytes against unmodified vLLM, which holds the whole prompt in all 30 layers.
    engine_none = full_kv.llm_engine
    engine_none.add_request("six-k-none", TokensPrompt(prompt_token_ids=prompt), greedy(4))
    while not any(output.outputs[0].token_ids for output in engine_none.step()):
        pass  # unmodified vLLM may chunk the prefill
    layer_blocks = sum(3 * blocks for blocks in held)
    assert layer_blocks < 30 * full
    assert kv_bytes_held(grouped, "six-k") * 30 * full == kv_bytes_held(full_kv, "six-k-none") * layer_blocks
    for llm in (grouped, full_kv):
        while llm.llm_engine.has_unfinished_requests():
            llm.llm_engine.step()
    assert free_blocks(grouped) == start_free


def test_short_prompts_match_unpruned_vllm(full_kv, grouped):
    prompts = {f"short-{n}": haystack_tokens(full_kv, n) for n in (64, 300, 900)}
    params = {req_id: greedy(24) for req_id in prompts}
    expected = run_requests(full_kv, prompts, params)
    assert run_requests(grouped, prompts, params) == expected


def test_mixed_concurrent_requests_return_every_block(grouped):
    start_free = free_blocks(grouped)
    lengths = [40, 300, 1300, 1600, 2200] * 4
    pruners = [{"kv_pruner": "asl"}, {"kv_pruner": "snapkv", "kv_budget": 512}, {"kv_pruner": "fastkv"}, {}]
    prompts = {f"mix-{i}": haystack_tokens(grouped, n, salt=f"Mix {i}. ") for i, n in enumerate(lengths)}
    params = {req_id: greedy(6 + i % 5, ignore_eos=True, **pruners[i % 4]) for i, req_id in enumerate(prompts)}
    decisions(grouped)
    outputs = run_requests(grouped, prompts, params)
    assert {req_id: len(tokens) for req_id, tokens in outputs.items()} == {
        req_id: params[req_id].max_tokens for req_id in prompts
    }
    made = decisions(grouped)
    # fastkv selects at layer 14 of 30: the five groups of layers 15..29 free their head.
    fastkv = made["mix-2"]  # 1300 tokens
    assert fastkv["group_offsets"] == [0] * 5 + [tail_offset(1300, SELECT_K, block_size(grouped))] * 5
    # A per-request budget prunes every layer alike: every group frees the same head.
    snapkv = made["mix-9"]  # 2200 tokens
    assert snapkv["group_offsets"] == [tail_offset(2200, 512, block_size(grouped))] * 10
    assert free_blocks(grouped) == start_free


@pytest.fixture(scope="module")
def small_grouped_pool(engines):
    """330 usable blocks (plus vLLM's null block) of 3 layers x 128 tokens: three 1530-token fastkv
    prefills fit (120 blocks each, 105 once the groups after layer 14 freed their head: 315), but the
    decode step that opens a 13th block in every group (10 blocks per request) does not."""
    return engines(
        kv_pruner="fastkv", asl_select_k=SELECT_K, num_gpu_blocks_override=331, max_num_seqs=4, max_model_len=4096
    )


def test_preempted_requests_without_budget_finish_complete(small_grouped_pool):
    llm = small_grouped_pool
    engine = llm.llm_engine
    start_free = free_blocks(llm)
    for index in range(3):
        prompt = haystack_tokens(llm, 1530, salt=f"Grouped pressure {index}. ")
        engine.add_request(f"grouped-{index}", TokensPrompt(prompt_token_ids=prompt), greedy(40, ignore_eos=True))
    lengths, preempted = run_counting_preemptions(llm)
    assert preempted > 0, "the pool was meant to force a preemption"
    assert lengths == {f"grouped-{index}": 40 for index in range(3)}
    assert free_blocks(llm) == start_free
