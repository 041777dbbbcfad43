"""Pruning under vLLM's chunked prefill: a prompt longer than a step is pruned at its last chunk.

Earlier chunks run vLLM's own forward and write full KV; the step holding the
last chunk (the window) runs the layer loop, scoring the window against every
key of the prompt in the cache, then keeps the budget over the whole prompt.
The engines keep vLLM's scheduler settings, with a small
`max_num_batched_tokens` so that prompts span several steps; fp32 so that the
same prompt scores alike whether its keys come from this step or the cache.
"""

from __future__ import annotations

import math

import pytest
from vllm.inputs import TokensPrompt

from asl_vllm.budget import tail_offset
from tests.engine.helpers import (
    block_size,
    blocks_held,
    decisions,
    external_id,
    free_blocks,
    greedy,
    haystack_tokens,
    run_requests,
    scheduler,
)

pytestmark = pytest.mark.slow

STEP_TOKENS = 1024
BUDGET = 1024
PRUNING = {"kv_pruner": "asl", "kv_budget": BUDGET, "asl_tau": 0.5, "dtype": "float32"}


@pytest.fixture(scope="module")
def chunked(engines):
    return engines(**PRUNING, max_num_batched_tokens=STEP_TOKENS)


@pytest.fixture(scope="module")
def one_step(engines):
    return engines(**PRUNING, max_num_batched_tokens=8192)


def _prefill(llm, req_id: str, prompt: list[int], max_tokens: int = 4) -> None:
    """Add the request and step until its prefill has run (its first token is out)."""
    engine = llm.llm_engine
    engine.add_request(req_id, TokensPrompt(prompt_token_ids=prompt), greedy(max_tokens, ignore_eos=True))
    while not any(output.request_id == req_id and output.outputs[0].token_ids for output in engine.step()):
        pass


def _finish(llm) -> None:
    engine = llm.llm_engine
    while engine.has_unfinished_requests():
        engine.step()


def test_a_prompt_six_times_the_step_budget_is_pruned_to_its_budget(chunked):
    num_tokens = 6000
    prompt = haystack_tokens(chunked, num_tokens, salt="Six chunks. ")
    start_free = free_blocks(chunked)
    decisions(chunked)
    _prefill(chunked, "six-chunks", prompt)
    decision = decisions(chunked)["six-chunks"]
    assert decision["prefill_steps"] == math.ceil(num_tokens / STEP_TOKENS)
    bs = block_size(chunked)
    offset = tail_offset(num_tokens, BUDGET, bs)
    assert decision["layer_offsets"] == [offset] * len(decision["layer_offsets"])
    assert blocks_held(chunked, "six-chunks") == math.ceil(num_tokens / bs) - offset // bs
    assert start_free - free_blocks(chunked) == blocks_held(chunked, "six-chunks")
    _finish(chunked)
    assert free_blocks(chunked) == start_free


@pytest.mark.parametrize("depth", [0.1, 0.9])
def test_chunked_and_one_step_pruning_choose_the_same_layer_and_tokens(chunked, one_step, depth):
    prompt = haystack_tokens(one_step, 4000, needle="The special magic number is 7341928.", depth=depth)
    made = {}
    for name, llm in (("one step", one_step), ("chunked", chunked)):
        decisions(llm)
        _prefill(llm, "same", prompt)
        made[name] = decisions(llm)["same"]
        _finish(llm)
    assert (made["one step"]["prefill_steps"], made["chunked"]["prefill_steps"]) == (1, 4)
    assert made["chunked"]["selection_layer"] is not None
    for field in ("selection_layer", "selected_indices", "layer_offsets"):
        assert made["chunked"][field] == made["one step"][field], field


@pytest.fixture(scope="module")
def vllm_chunked(engines):
    return engines(dtype="float32", max_num_batched_tokens=STEP_TOKENS)


def test_a_mixed_batch_completes_and_unpruned_outputs_equal_vllms(chunked, vllm_chunked):
    # A pruned request decoding, a long prompt pruned at its last chunk, and ordinary prompts, one of them
    # chunked too, all in the same steps.
    decoding = haystack_tokens(chunked, 2500, salt="Decoding. ")
    prompts = {
        "long": haystack_tokens(chunked, 3500, salt="Long. "),
        "ordinary-chunked": haystack_tokens(chunked, 1500, salt="Ordinary. "),
        "ordinary-short": haystack_tokens(chunked, 200, salt="Short. "),
    }
    unpruned = {"kv_pruner": "none"}  # only a pruning server knows the setting
    expected: dict[str, list[int]] = {}
    got: dict[str, list[int]] = {}
    decisions(chunked)
    for llm, outputs, extra in ((vllm_chunked, expected, {}), (chunked, got, unpruned)):
        params = {
            "long": greedy(8, ignore_eos=True),
            "ordinary-chunked": greedy(16, ignore_eos=True, **extra),
            "ordinary-short": greedy(16, ignore_eos=True),
        }
        start_free = free_blocks(llm)
        _prefill(llm, "decoding", decoding, max_tokens=40)
        outputs.update(run_requests(llm, prompts, params))
        _finish(llm)
        assert free_blocks(llm) == start_free
    made = decisions(chunked)
    assert made["decoding"]["freed_blocks"] > 0 and made["long"]["prefill_steps"] > 1
    assert made["long"]["freed_blocks"] > 0
    assert not {"ordinary-chunked", "ordinary-short"} & {req for req, d in made.items() if d["freed_blocks"]}
    assert len(got["long"]) == 8
    for req_id in ("ordinary-chunked", "ordinary-short"):
        assert got[req_id] == expected[req_id], req_id


def test_a_request_aborted_between_its_chunks_returns_every_block(chunked):
    engine = chunked.llm_engine
    start_free = free_blocks(chunked)
    decisions(chunked)
    engine.add_request(
        "aborted", TokensPrompt(prompt_token_ids=haystack_tokens(chunked, 4000, salt="Aborted. ")), greedy(4)
    )
    engine.step()
    engine.step()
    assert 0 < blocks_held(chunked, "aborted")
    internal = next(key for key in scheduler(chunked).requests if external_id(key) == "aborted")
    engine.abort_request([internal], internal=True)
    _finish(chunked)
    assert free_blocks(chunked) == start_free
    assert "aborted" not in decisions(chunked)
    assert not scheduler(chunked)._pruner_reports


@pytest.fixture(scope="module")
def tight_chunked(engines):
    """39 usable blocks of 32 tokens, steps of 256 tokens and at most 64 per prompt: three 900-token prompts
    are chunked side by side and cannot all hold full KV meanwhile, so vLLM preempts one between its chunks."""
    return engines(
        kv_pruner="asl",
        kv_budget=256,
        block_size=32,
        num_gpu_blocks_override=40,
        max_num_seqs=4,
        max_model_len=1024,
        max_num_batched_tokens=256,
        long_prefill_token_threshold=64,
    )


def test_requests_preempted_between_their_chunks_complete_and_return_every_block(tight_chunked):
    llm = tight_chunked
    start_free = free_blocks(llm)
    decisions(llm)
    prompts = {f"tight-{index}": haystack_tokens(llm, 900, salt=f"Tight {index}. ") for index in range(3)}
    engine = llm.llm_engine
    for req_id, prompt in prompts.items():
        engine.add_request(req_id, TokensPrompt(prompt_token_ids=prompt), greedy(20, ignore_eos=True))
    preempted_mid_prefill = 0
    lengths: dict[str, int] = {}
    while engine.has_unfinished_requests():
        for output in engine.step():
            if output.finished:
                lengths[output.request_id] = len(output.outputs[0].token_ids)
        for request in scheduler(llm).requests.values():
            if request.num_preemptions and request.num_output_tokens == 0:
                preempted_mid_prefill += 1
    assert lengths == {req_id: 20 for req_id in prompts}
    assert preempted_mid_prefill > 0
    made = decisions(llm)
    assert all(made[req_id]["freed_blocks"] > 0 for req_id in prompts)
    assert free_blocks(llm) == start_free
    assert not scheduler(llm)._pruner_reports
