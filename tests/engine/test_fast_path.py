"""Pruned requests decode on vLLM's own forward; only a step holding a pruning prefill runs the layer loop."""

from __future__ import annotations

import pytest
from vllm.engine.arg_utils import EngineArgs

from asl_vllm.budget import tail_offset
from tests.engine.helpers import (
    add_request,
    block_size,
    decisions,
    free_blocks,
    generate_one,
    greedy,
    haystack_tokens,
    layer_loop_steps,
    scheduler,
)

pytestmark = pytest.mark.slow

NEEDLE = "The special magic number is 7341928."
# Each of A's requests is pruned by a different mechanism: layer-group offsets, a two-pass re-run, a budget.
PRUNED_REQUESTS = {
    "groups": {},
    "two-pass": {"asl_two_pass": True},
    "budget": {"kv_pruner": "snapkv", "kv_budget": 512},
}


@pytest.fixture(scope="module")
def compiled(engines):
    """vLLM's default execution mode (torch.compile on the CPU build); ASL without a budget, 10 layer groups."""
    return engines(kv_pruner="asl", asl_tau=0.5, asl_select_k=1024, enforce_eager=False)


def test_pruning_engine_keeps_vllm_default_compilation(compiled, model_path):
    default = EngineArgs(model=model_path, max_model_len=8192).create_engine_config().compilation_config
    config = compiled.llm_engine.vllm_config.compilation_config
    assert (config.mode, config.cudagraph_mode, config.backend) == (
        default.mode,
        default.cudagraph_mode,
        default.backend,
    )
    assert not compiled.llm_engine.vllm_config.model_config.enforce_eager
    assert compiled.llm_engine.vllm_config.scheduler_config.enable_chunked_prefill


@pytest.mark.parametrize("kind", sorted(PRUNED_REQUESTS))
def test_decode_steps_of_a_pruned_request_never_enter_the_layer_loop(compiled, kind):
    prompt = haystack_tokens(compiled, 4000, needle=NEEDLE, salt=f"Alone {kind}. ")
    start_free, loops = free_blocks(compiled), layer_loop_steps(compiled)
    decisions(compiled)
    tokens = generate_one(compiled, f"alone-{kind}", prompt, 16, **PRUNED_REQUESTS[kind])
    assert len(tokens) == 16
    made = decisions(compiled)[f"alone-{kind}"]
    assert made["freed_blocks"] > 0, made
    assert layer_loop_steps(compiled) - loops == 1  # its prefill; 15 decode steps ran vLLM's forward
    assert free_blocks(compiled) == start_free


@pytest.mark.parametrize("kind", sorted(PRUNED_REQUESTS))
def test_decode_on_the_fast_path_equals_decode_through_the_layer_loop(compiled, kind):
    """The same pruned request decodes alone (vLLM's forward) and beside a new pruning prefill at every
    step (each of its decode steps then runs through the layer loop): same greedy tokens."""
    max_tokens = 6
    prompt = haystack_tokens(compiled, 4000, needle=NEEDLE, salt=f"Twice {kind}. ")
    alone = generate_one(compiled, f"fast-{kind}", prompt, max_tokens, **PRUNED_REQUESTS[kind])

    engine = compiled.llm_engine
    start_free, loops = free_blocks(compiled), layer_loop_steps(compiled)
    decisions(compiled)
    params = greedy(max_tokens, ignore_eos=True, **PRUNED_REQUESTS[kind])
    add_request(compiled, f"loop-{kind}", prompt, params)
    engine.step()  # its prefill
    tokens: list[int] | None = None
    neighbour = 0
    while tokens is None:
        # A new prompt pruned by its own budget joins every decode step of the request.
        filler = haystack_tokens(compiled, 800, salt=f"Neighbour {kind} {neighbour}. ")
        add_request(compiled, f"neighbour-{kind}-{neighbour}", filler, greedy(2, kv_pruner="snapkv", kv_budget=256))
        neighbour += 1
        for output in engine.step():
            if output.finished and output.request_id.startswith("loop-"):
                tokens = list(output.outputs[0].token_ids)
    while engine.has_unfinished_requests():
        engine.step()
    assert neighbour == max_tokens - 1
    assert layer_loop_steps(compiled) - loops == max_tokens  # every step of the request ran the layer loop
    made = decisions(compiled)
    assert all(made[f"neighbour-{kind}-{index}"]["freed_blocks"] > 0 for index in range(neighbour))
    assert tokens == alone
    assert free_blocks(compiled) == start_free


@pytest.fixture(scope="module")
def small_steps(engines):
    """Chunked prefill with a 2048-token step budget (vLLM's API-server default on the CPU build)."""
    return engines(kv_pruner="asl", asl_tau=0.5, asl_select_k=1024, max_num_batched_tokens=2048)


def _record_schedules(monkeypatch, llm) -> list[dict[str, tuple[int, int]]]:
    """Each step's {request id: (tokens already computed, tokens scheduled)}, as vLLM's scheduler decided."""
    sched = scheduler(llm)
    steps: list[dict[str, tuple[int, int]]] = []
    original = sched.schedule

    def schedule(*args, **kwargs):
        before = {req_id: request.num_computed_tokens for req_id, request in sched.requests.items()}
        output = original(*args, **kwargs)
        steps.append(
            {
                req_id.rsplit("-", 1)[0]: (before.get(req_id, 0), count)
                for req_id, count in output.num_scheduled_tokens.items()
            }
        )
        return output

    monkeypatch.setattr(sched, "schedule", schedule)
    return steps


def test_one_step_mixes_a_chunked_prefill_a_pruning_prefill_and_pruned_decodes(small_steps, monkeypatch):
    llm = small_steps
    engine = llm.llm_engine
    steps = _record_schedules(monkeypatch, llm)
    start_free, loops = free_blocks(llm), layer_loop_steps(llm)
    decisions(llm)
    decoding = haystack_tokens(llm, 1500, salt="Decoding. ")
    add_request(llm, "decoding", decoding, greedy(12, ignore_eos=True, kv_budget=512))
    engine.step()
    unpruned = haystack_tokens(llm, 2247, salt="Unpruned. ")
    pruning = haystack_tokens(llm, 1500, salt="Pruning. ")
    add_request(llm, "unpruned", unpruned, greedy(4, ignore_eos=True, kv_pruner="none"))
    add_request(llm, "pruning", pruning, greedy(4, ignore_eos=True, kv_budget=512))
    lengths: dict[str, int] = {}
    while engine.has_unfinished_requests():
        for output in engine.step():
            if output.finished:
                lengths[output.request_id] = len(output.outputs[0].token_ids)
    assert lengths == {"decoding": 12, "unpruned": 4, "pruning": 4}
    # Step 2: the decode and the unpruned prompt's first chunk fill the budget; the prompt to prune waits whole.
    assert steps[1] == {"decoding": (1500, 1), "unpruned": (0, 2047)}
    # Step 3: the unpruned prompt's last chunk, the whole pruning prefill and the pruned request's decode.
    assert steps[2] == {"decoding": (1501, 1), "unpruned": (2047, 200), "pruning": (0, 1500)}
    made = decisions(llm)
    assert "unpruned" not in made and made["pruning"]["freed_blocks"] > 0 and made["decoding"]["freed_blocks"] > 0
    assert layer_loop_steps(llm) - loops == 2
    assert free_blocks(llm) == start_free


def test_a_prompt_longer_than_the_step_budget_is_pruned_at_its_last_chunk(small_steps, monkeypatch):
    llm = small_steps
    steps = _record_schedules(monkeypatch, llm)
    start_free, loops = free_blocks(llm), layer_loop_steps(llm)
    decisions(llm)
    prompt = haystack_tokens(llm, 3000, salt="Too long. ")
    tokens = generate_one(llm, "too-long", prompt, 4, kv_budget=512)
    assert len(tokens) == 4
    # vLLM's own chunks; only the last one leaves vLLM's forward.
    assert [step["too-long"] for step in steps if "too-long" in step][:2] == [(0, 2048), (2048, 952)]
    assert layer_loop_steps(llm) - loops == 1
    made = decisions(llm)["too-long"]
    assert made["prefill_steps"] == 2 and made["freed_blocks"] > 0
    assert made["layer_offsets"] == [tail_offset(3000, 512, block_size(llm))] * len(made["layer_offsets"])
    assert free_blocks(llm) == start_free
