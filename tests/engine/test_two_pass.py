"""GemFilter and ASL two-pass inside vLLM's engine: the re-run, its positions, its blocks, its answers.

Both methods run per request (`vllm_xargs`) on engines shared with
`test_pruned_engine.py`: ASL with tau 0.5 and select-k 1024 (the embedded 30-layer
model settles before its last layer there), and ASL with a 1024-token budget.
"""

from __future__ import annotations

import math

import pytest
from vllm.inputs import TokensPrompt

from asl_vllm.budget import tail_offset
from asl_vllm.config import PrunerConfig
from tests.engine.helpers import (
    block_size,
    blocks_held,
    blocks_held_per_group,
    decisions,
    free_blocks,
    greedy,
    haystack_tokens,
    run_requests,
    scheduler,
)

pytestmark = pytest.mark.slow

SELECT_K = 1024
BUDGET = 1024
NUM_TOKENS = 4000
# vllm_xargs of each method, on a server started with --kv-pruner asl.
METHODS = {"gemfilter": {"kv_pruner": "gemfilter"}, "asl-two-pass": {"asl_two_pass": True}}


def _method(decision: dict) -> str:
    """The pruner a decision names, with its two-pass variant spelled as METHODS does."""
    return decision["pruner"] + ("-two-pass" if decision["two_pass"] else "")


@pytest.fixture(scope="module")
def full_kv(engines):
    return engines()


@pytest.fixture(scope="module")
def propagating(engines):
    return engines(kv_pruner="asl", asl_tau=0.5, asl_select_k=SELECT_K)


@pytest.fixture(scope="module")
def budgeted(engines):
    return engines(kv_pruner="asl", kv_budget=BUDGET)


def _prefill(llm, req_id: str, prompt: list[int], params) -> dict:
    """Add one request, run its prefill step alone, return its decision."""
    decisions(llm)
    llm.llm_engine.add_request(req_id, TokensPrompt(prompt_token_ids=prompt), params)
    llm.llm_engine.step()
    return decisions(llm)[req_id]


def _finish(llm, req_id: str) -> list[int]:
    tokens: list[int] = []
    while llm.llm_engine.has_unfinished_requests():
        for output in llm.llm_engine.step():
            if output.finished and output.request_id == req_id:
                tokens = list(output.outputs[0].token_ids)
    return tokens


@pytest.mark.parametrize("method", METHODS)
def test_re_run_keeps_the_selected_tokens_in_every_layer_and_frees_the_head(propagating, method):
    """k' tokens in every layer at slots [D, N), head blocks back in the pool, decoding at positions k' + t
    gives exactly what vLLM gives for a prompt made of the selected tokens alone."""
    llm = propagating
    bs = block_size(llm)
    num_layers = scheduler(llm).vllm_config.model_config.hf_config.num_hidden_layers
    start_free = free_blocks(llm)
    prompt = haystack_tokens(llm, NUM_TOKENS, salt=f"Arithmetic {method}. ")
    decision = _prefill(llm, method, prompt, greedy(16, ignore_eos=True, **METHODS[method]))

    offset = tail_offset(NUM_TOKENS, SELECT_K, bs)
    kept = NUM_TOKENS - offset
    assert _method(decision) == method
    config = scheduler(llm).pruner_config
    if method == "gemfilter":
        assert decision["selection_layer"] == PrunerConfig(pruner="gemfilter").resolve(num_layers).fixed_layer
    else:
        assert config.min_layer < decision["selection_layer"] < num_layers
    assert decision["selected_tokens"] == kept
    assert len(decision["selected_indices"]) == kept
    assert decision["selected_indices"][-32:] == list(range(NUM_TOKENS - 32, NUM_TOKENS))  # the window
    assert decision["layer_offsets"] == [offset] * num_layers
    assert decision["position_offset"] == offset
    # Every layer keeps the same tail, so every KV cache group (layer bucket) frees the same head.
    num_groups = len(scheduler(llm).kv_cache_config.kv_cache_groups)
    assert decision["freed_blocks_per_group"] == [offset // bs] * num_groups
    assert blocks_held_per_group(llm, method) == [math.ceil(NUM_TOKENS / bs) - offset // bs] * num_groups
    assert start_free - free_blocks(llm) == blocks_held(llm, method)
    got = _finish(llm, method)
    assert free_blocks(llm) == start_free

    selected_prompt = [prompt[index] for index in decision["selected_indices"]]
    expected = run_requests(llm, {"alone": selected_prompt}, {"alone": greedy(16, ignore_eos=True, kv_pruner="none")})
    assert got == expected["alone"]


def test_re_run_with_a_budget_keeps_b_tokens_per_layer_and_shifts_positions_by_the_selection(budgeted):
    """select-k 2048 then B = 1024 per layer and KV head: KV read from N - B', positions from N - k'."""
    llm = budgeted
    bs = block_size(llm)
    start_free = free_blocks(llm)
    prompt = haystack_tokens(llm, NUM_TOKENS, salt="Budget gemfilter. ")
    decision = _prefill(llm, "budget", prompt, greedy(8, ignore_eos=True, kv_pruner="gemfilter"))
    select_k = scheduler(llm).pruner_config.select_k
    assert decision["selected_tokens"] == NUM_TOKENS - tail_offset(NUM_TOKENS, select_k, bs)
    assert decision["position_offset"] == tail_offset(NUM_TOKENS, select_k, bs)
    offset = tail_offset(NUM_TOKENS, BUDGET, bs)
    assert set(decision["layer_offsets"]) == {offset}
    assert blocks_held(llm, "budget") == math.ceil(NUM_TOKENS / bs) - offset // bs
    assert len(_finish(llm, "budget")) == 8
    assert free_blocks(llm) == start_free


@pytest.mark.parametrize("method", METHODS)
def test_short_prompts_match_unpruned_vllm(full_kv, propagating, method):
    prompts = {f"short-{n}": haystack_tokens(full_kv, n) for n in (64, 300, 900)}
    expected = run_requests(full_kv, prompts, {req_id: greedy(24) for req_id in prompts})
    decisions(propagating)
    got = run_requests(propagating, prompts, {req_id: greedy(24, **METHODS[method]) for req_id in prompts})
    assert got == expected
    assert decisions(propagating) == {}


def test_mixed_concurrent_requests_with_re_runs_return_every_block(budgeted):
    """Re-runs (selection and budget), budget-only prefills, propagation and plain requests in shared steps."""
    start_free = free_blocks(budgeted)
    gemfilter, two_pass = METHODS["gemfilter"], METHODS["asl-two-pass"]
    mix = [
        (4000, gemfilter),  # two-pass prompts run whole: 4,000 tokens fit one step of vLLM's offline budget (4,096)
        (2300, gemfilter),
        (1200, gemfilter),
        (40, gemfilter),
        (4000, two_pass),
        (2300, two_pass),
        (3300, {"kv_pruner": "fastkv"}),
        (1200, {"kv_pruner": "none"}),
        (3300, {}),
    ]
    prompts = {f"mix-{i}": haystack_tokens(budgeted, n, salt=f"Mix {i}. ") for i, (n, _) in enumerate(mix)}
    params = {f"mix-{i}": greedy(4 + i % 7, ignore_eos=True, **extra) for i, (_, extra) in enumerate(mix)}
    decisions(budgeted)
    outputs = run_requests(budgeted, prompts, params)
    assert {req_id: len(tokens) for req_id, tokens in outputs.items()} == {
        req_id: params[req_id].max_tokens for req_id in prompts
    }
    made = decisions(budgeted)
    assert made["mix-0"]["position_offset"] > 0 and made["mix-1"]["position_offset"] > 0  # re-run
    assert made["mix-2"]["position_offset"] == 0 and made["mix-2"]["layer_offsets"][0] > 0  # budget only
    assert {_method(decision) for decision in made.values()} == {"gemfilter", "asl-two-pass", "fastkv", "asl"}
    assert free_blocks(budgeted) == start_free


NEEDLE_NUMBERS = ("7341928", "2095613")


class NeedleMissed(AssertionError):
    """The pruned engine's answer lacks a needle full KV finds: the only failure the xfail below expects."""


GEMFILTER_SHALLOW_MISS = pytest.mark.xfail(
    strict=True,
    raises=NeedleMissed,
    reason="GemFilter's filter layer (12 of 30) drops the needles at 10% depth of a 4,000-token prompt on the 135M "
    "model, where full KV and ASL two-pass (selection layer 15) find them; vLLM on the selected tokens alone answers "
    "the same",
)


def _needles_found(llm, depth: float, **extra_args) -> dict[str, bool]:
    """Whether the answer to each 4k-token needle prompt at `depth` contains its number."""
    prompts = {
        number: haystack_tokens(llm, NUM_TOKENS, needle=f"The special magic number is {number}.", depth=depth)
        for number in NEEDLE_NUMBERS
    }
    outputs = run_requests(llm, prompts, {req_id: greedy(12, **extra_args) for req_id in prompts})
    tokenizer = llm.get_tokenizer()
    return {number: number in tokenizer.decode(tokens) for number, tokens in outputs.items()}


@pytest.mark.parametrize(
    ("method", "depth"),
    [
        pytest.param("gemfilter", 0.1, marks=GEMFILTER_SHALLOW_MISS),
        ("gemfilter", 0.5),
        ("gemfilter", 0.9),
        ("asl-two-pass", 0.1),
        ("asl-two-pass", 0.5),
        ("asl-two-pass", 0.9),
    ],
)
def test_needle_found_after_the_re_run_where_full_kv_finds_it(full_kv, propagating, method, depth):
    assert all(_needles_found(full_kv, depth).values())
    decisions(propagating)
    found = _needles_found(propagating, depth, **METHODS[method])
    made = decisions(propagating)
    offset = tail_offset(NUM_TOKENS, SELECT_K, block_size(propagating))
    assert [decision["position_offset"] for decision in made.values()] == [offset] * len(found)
    if not all(found.values()):
        raise NeedleMissed(found)
