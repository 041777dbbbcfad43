"""Pruned requests under KV pressure (preemption, recompute) and aborts: complete answers, no leaked block."""

from __future__ import annotations

import pytest
from vllm.inputs import TokensPrompt

from tests.engine.helpers import (
    blocks_held,
    decisions,
    external_id,
    free_blocks,
    greedy,
    haystack_tokens,
    run_counting_preemptions,
    run_requests,
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
    assert not scheduler(small_pool)._pruner_reports  # every decision report left with its request


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
    assert not scheduler(small_pool)._pruner_reports


@pytest.fixture(scope="module")
def tight_pool(engines):
    """39 usable blocks of 32 tokens and a budget of 256: pressure builds within tens of decode steps.

    fp32: the test compares greedy outputs of requests run alone and batched with others, and bf16 matmuls
    (on AMX hosts in particular) round differently with the batch's row count."""
    return engines(
        kv_pruner="asl",
        kv_budget=256,
        block_size=32,
        num_gpu_blocks_override=40,
        max_num_seqs=4,
        max_model_len=1024,
        dtype="float32",
    )


def test_preemption_of_pruned_and_unpruned_requests_keeps_greedy_short_outputs(tight_pool):
    engine = tight_pool.llm_engine
    start_free = free_blocks(tight_pool)
    shorts = {f"short-{index}": haystack_tokens(tight_pool, 100, salt=f"Short {index}. ") for index in range(2)}
    short_params = {req_id: greedy(96, ignore_eos=True) for req_id in shorts}
    alone = run_requests(tight_pool, shorts, short_params)
    assert free_blocks(tight_pool) == start_free
    # Running order (and so preemption order, last first): unpruned long, pruned long, then the shorts.
    # The shorts fill the pool within about 70 steps, before they finish (96 tokens), and at the end the
    # longs alone need 22 + 19 blocks of the 39, so the pool must preempt.
    prompts = {
        "unpruned": haystack_tokens(tight_pool, 400, salt="Unpruned. "),
        "pruned": haystack_tokens(tight_pool, 600, salt="Pruned. "),
        **shorts,
    }
    params = {
        "unpruned": greedy(300, ignore_eos=True, kv_pruner="none"),
        "pruned": greedy(300, ignore_eos=True),
        **short_params,
    }
    for req_id, token_ids in prompts.items():
        engine.add_request(req_id, TokensPrompt(prompt_token_ids=token_ids), params[req_id])
    preemptions: dict[str, int] = {}
    outputs: dict[str, list[int]] = {}
    while engine.has_unfinished_requests():
        for output in engine.step():
            if output.finished:
                outputs[output.request_id] = list(output.outputs[0].token_ids)
        for internal, request in scheduler(tight_pool).requests.items():
            req_id = external_id(internal)
            preemptions[req_id] = max(preemptions.get(req_id, 0), request.num_preemptions)
    pruned = {req_id for req_id, made in decisions(tight_pool).items() if any(made["layer_offsets"])}
    assert "pruned" in pruned and not pruned & {"unpruned", *shorts}
    assert preemptions["pruned"] > 0, preemptions
    assert any(preemptions[req_id] > 0 for req_id in shorts), preemptions
    assert len(outputs["unpruned"]) == len(outputs["pruned"]) == 300
    for req_id in shorts:
        assert outputs[req_id] == alone[req_id], f"{req_id} changed under pressure ({preemptions[req_id]} preemptions)"
    assert free_blocks(tight_pool) == start_free
