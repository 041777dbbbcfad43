"""Tensor parallelism: two ranks decide and answer exactly as one, each decision reaches the scheduler once.

A generated 8-layer Llama (4 query, 2 KV heads: one KV head per rank at TP=2;
`random_llama.py`) serves the same needle prompts at TP=1 and TP=2 (vLLM's CPU
build runs the ranks as worker processes; the engine core, with the scheduler,
stays in this process). Every pruner runs per request on one engine started
with `--kv-pruner asl`: asl with and without a budget (shared and per KV head),
fastkv, snapkv, pyramidkv, and the two-pass methods gemfilter and asl two-pass. Settings:
ASL's reference layer 2 over 2 observed layers and tau 0.2, where the model's
relative rank variance falls from 0.3-0.5 (layer 3) to 0.10-0.15 (layer 4),
so layer 4 selects with room on both sides. The embedded model runs at TP=3
(its 3 KV heads, one per rank) as a smoke run: pruning finds the needles full
KV finds, every rank decides alike.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import vllm.envs as vllm_envs
from transformers import AutoTokenizer
from vllm import LLM
from vllm.inputs import TokensPrompt

import asl_vllm
from asl_vllm.report_key import REPORT_KEY
from tests.engine.helpers import external_id, free_blocks, greedy, haystack_tokens
from tests.engine.random_llama import write_random_llama

pytestmark = [pytest.mark.slow, pytest.mark.runs_last]

NUM_TOKENS = 700
MAX_TOKENS = 8
SELECTION_LAYER = 4
# vllm_xargs per pruner, on a server started with --kv-pruner asl (tau 0.2, select-k 256).
PRUNERS: dict[str, dict[str, Any]] = {
    "asl": {},
    "asl-budget": {"kv_budget": 192},
    "asl-budget-per-head": {"kv_budget": 192, "kv_budget_heads": "per-kv-head"},
    "fastkv": {"kv_pruner": "fastkv"},
    "snapkv": {"kv_pruner": "snapkv", "kv_budget": 192, "kv_budget_heads": "per-kv-head"},
    "pyramidkv": {"kv_pruner": "pyramidkv", "kv_budget": 192},
    "asl-two-pass": {"asl_two_pass": True},
    "gemfilter": {"kv_pruner": "gemfilter"},
}
DEPTHS = (0.2, 0.7)
NEEDLE = "7341928"
# What every rank must agree on, and TP=2 with TP=1.
# The embedded model's smoke run: full KV and pruners that find 4,000-token needles on one rank.
EMBEDDED_TOKENS = 3000
# Depths where the model's full KV finds the needle (at 20% it answers a number of the noise).
EMBEDDED_DEPTHS = (0.5, 0.9)
EMBEDDED_PRUNERS: dict[str, dict[str, Any]] = {
    "none": {"kv_pruner": "none"},
    "asl": {},
    "fastkv": {"kv_pruner": "fastkv"},
}
DECIDED = ("selection_layer", "selected_tokens", "selected_indices", "layer_offsets", "position_offset")


@pytest.fixture(scope="module", autouse=True)
def room_for_ranks(engines) -> None:
    """The session's shared in-process engines are freed first: the rank processes need their memory."""
    engines.release_all()


@pytest.fixture(scope="module")
def random_llama(tmp_path_factory, model_path) -> str:
    return str(write_random_llama(tmp_path_factory.mktemp("random-llama"), model_path))


class DecisionLines(logging.Handler):
    """The scheduler's one log line per decision, by request id."""

    def __init__(self) -> None:
        super().__init__()
        self.request_ids: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("kv-pruner request="):
            self.request_ids.append(external_id(record.args[0]))


def _checkout_of(_worker: Any) -> str:
    import asl_vllm as worker_package

    return worker_package.__file__


RANDOM_LLAMA_SETTINGS = {
    "dtype": "float32",
    "asl_min_layer": 2,
    "asl_obs_layers": 2,
    "asl_tau": 0.2,
    "asl_select_k": 256,
    "max_model_len": 2048,
}


def _serve(
    model: str,
    tensor_parallel_size: int,
    settings: dict[str, Any],
    pruners: dict[str, dict[str, Any]],
    num_tokens: int,
    depths: tuple[float, ...] = DEPTHS,
) -> dict[str, Any]:
    """Start an engine, run a needle prompt per pruner and depth through it, stop it; what the tests compare."""
    llm = LLM(
        model=model,
        tensor_parallel_size=tensor_parallel_size,
        kv_pruner="asl",
        enforce_eager=True,
        seed=0,
        **settings,
    )
    lines = DecisionLines()
    logging.getLogger("vllm.asl_vllm").addHandler(lines)
    try:
        engine = llm.llm_engine
        free_before = free_blocks(llm)
        for name, extra_args in pruners.items():
            for depth in depths:
                req_id = f"{name}@{depth}"
                prompt = haystack_tokens(llm, num_tokens, needle=NEEDLE, depth=depth, salt=req_id)
                engine.add_request(
                    req_id, TokensPrompt(prompt_token_ids=prompt), greedy(MAX_TOKENS, True, **extra_args)
                )
        tokens, reports = {}, {}
        while engine.has_unfinished_requests():
            for output in engine.step():
                if output.finished:
                    tokens[output.request_id] = list(output.outputs[0].token_ids)
                    reports[output.request_id] = (output.kv_transfer_params or {}).get(REPORT_KEY)
        # One more step hands the workers the last finished requests, which they then forget.
        engine.step()
        return {
            "model": model,
            "checkouts": llm.collective_rpc(_checkout_of),
            "tokens": tokens,
            "reports": reports,
            "decisions": [
                {external_id(decision["req_id"]): decision for decision in made}
                for made in llm.collective_rpc("take_pruner_decisions")
            ],
            "held": llm.collective_rpc("pruned_requests_held"),
            "free": (free_before, free_blocks(llm)),
            "logged": lines.request_ids,
        }
    finally:
        logging.getLogger("vllm.asl_vllm").removeHandler(lines)
        # The executor only: an in-process EngineCore's shutdown tears down this process's distributed
        # state, which the session's other in-process engines still use (vLLM 0.32 `EngineCore.shutdown`).
        llm.llm_engine.engine_core.engine_core.model_executor.shutdown()


@pytest.fixture(scope="module")
def one_rank(random_llama) -> dict[str, Any]:
    return _serve(random_llama, 1, RANDOM_LLAMA_SETTINGS, PRUNERS, NUM_TOKENS)


def _serve_sharded(*args: Any) -> dict[str, Any]:
    # Worker processes import this checkout, whichever way vLLM starts them; the CPU build's automatic
    # thread binding wants more cores per rank than a small CI machine has.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(Path(asl_vllm.__file__).parents[1]))
        patch.setenv("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        # An earlier in-process engine froze vLLM's environment variables (vLLM 0.32 `enable_envs_cache`).
        vllm_envs.disable_envs_cache()
        return _serve(*args)


@pytest.fixture(scope="module")
def two_ranks(random_llama) -> dict[str, Any]:
    return _serve_sharded(random_llama, 2, RANDOM_LLAMA_SETTINGS, PRUNERS, NUM_TOKENS)


@pytest.fixture(scope="module")
def embedded_three_ranks(model_path) -> dict[str, Any]:
    """The embedded model (9 query, 3 KV heads) at TP=3, one KV head per rank: full KV beside pruning.

    fp32: in bf16, vLLM's all-reduce of partial layer outputs rounds each rank's sum, so kept sets
    differ from one rank's by up to 2% of tokens, enough to flip an answer the model barely finds.
    """
    settings = {"dtype": "float32", "asl_tau": 0.5, "asl_select_k": 1024, "max_model_len": 4096}
    return _serve_sharded(model_path, 3, settings, EMBEDDED_PRUNERS, EMBEDDED_TOKENS, EMBEDDED_DEPTHS)


def test_workers_run_this_checkout(two_ranks):
    assert two_ranks["checkouts"] == [asl_vllm.__file__] * 2


def test_every_rank_decides_alike(two_ranks):
    rank0, rank1 = two_ranks["decisions"]
    assert set(rank0) == set(rank1) == set(two_ranks["tokens"])
    for req_id, decision in rank0.items():
        assert {key: decision[key] for key in DECIDED} == {key: rank1[req_id][key] for key in DECIDED}, req_id


def test_two_ranks_select_keep_and_answer_as_one(one_rank, two_ranks):
    single, sharded = one_rank["decisions"][0], two_ranks["decisions"][0]
    assert set(single) == set(sharded) == set(one_rank["tokens"]) == set(two_ranks["tokens"])
    for req_id, decision in single.items():
        assert {key: decision[key] for key in DECIDED} == {key: sharded[req_id][key] for key in DECIDED}, req_id
        assert two_ranks["tokens"][req_id] == one_rank["tokens"][req_id], req_id
        # Not vacuous: every request was pruned, and the selecting pruners selected where the model settles.
        assert any(decision["layer_offsets"]), req_id
        name = req_id.split("@")[0]
        if name in ("snapkv", "pyramidkv"):
            assert decision["selection_layer"] is None
        else:
            expected_layer = 3 if name == "gemfilter" else SELECTION_LAYER
            assert decision["selection_layer"] == expected_layer, req_id
            assert len(decision["selected_indices"]) == decision["selected_tokens"] < NUM_TOKENS


def test_each_decision_reaches_the_scheduler_once(one_rank, two_ranks):
    for run in (one_rank, two_ranks):
        assert sorted(run["logged"]) == sorted(run["tokens"])
        for req_id, report in run["reports"].items():
            assert report["pruned"] and report["freed_blocks"] > 0, req_id
    for req_id, report in two_ranks["reports"].items():
        assert report["freed_blocks"] == one_rank["reports"][req_id]["freed_blocks"], req_id


def test_no_block_or_offset_is_left_on_any_rank(one_rank, two_ranks):
    for run, ranks in ((one_rank, 1), (two_ranks, 2)):
        free_before, free_after = run["free"]
        assert free_after == free_before
        assert run["held"] == [0] * ranks


def test_the_embedded_model_at_three_ranks_finds_the_needles_full_kv_finds(embedded_three_ranks):
    run = embedded_three_ranks
    tokenizer = AutoTokenizer.from_pretrained(run["model"])
    answers = {req_id: tokenizer.decode(tokens) for req_id, tokens in run["tokens"].items()}
    for depth in EMBEDDED_DEPTHS:
        assert NEEDLE in answers[f"none@{depth}"], answers
        for name in ("asl", "fastkv"):
            req_id = f"{name}@{depth}"
            assert NEEDLE in answers[req_id], answers
            report = run["reports"][req_id]
            assert report["pruned"] and report["selection_layer"] is not None, report
            assert report["kept_tokens"] < report["prompt_tokens"] and report["freed_blocks"] > 0, report
    rank0, *others = run["decisions"]
    for decisions in others:
        assert set(decisions) == set(rank0)
        for req_id, decision in rank0.items():
            assert {key: decision[key] for key in DECIDED} == {key: decisions[req_id][key] for key in DECIDED}
    assert sorted(run["logged"]) == sorted(req_id for req_id in run["tokens"] if not req_id.startswith("none"))
    assert run["free"][0] == run["free"][1] and run["held"] == [0, 0, 0]
