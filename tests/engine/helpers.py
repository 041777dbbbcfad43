"""Engine test helpers: prompts and request loops over the harness's engine readers."""

from __future__ import annotations

from typing import Any

from vllm import LLM, SamplingParams
from vllm.inputs import TokensPrompt

from harness.chat_prompt import needle_prompt
from harness.engine_probe import (  # noqa: F401  (re-exported for the engine tests)
    block_size,
    blocks_held,
    blocks_held_per_group,
    decisions,
    external_id,
    free_blocks,
    internal_id,
    kv_bytes_held,
    layers_per_group,
    scheduler,
)
from harness.text_sources import haystack_text


def haystack_tokens(
    llm: LLM, num_tokens: int, needle: str | None = None, depth: float = 0.5, salt: str = ""
) -> list[int]:
    """A chat prompt of exactly `num_tokens` tokens: noise sentences, an optional needle, a question.

    A `salt` starts the text with its own words, so the prompt shares no cached prefix block.
    """
    question = "What is the special magic number mentioned in the text above?" if needle else "Summarize."
    filler = salt + haystack_text("noise", num_tokens)
    return needle_prompt(
        llm.get_tokenizer(), num_tokens, filler, needle, depth, question, "The special magic number is"
    )


def layer_loop_steps(llm: LLM) -> int:
    """Steps the worker ran through the pruning layer loop instead of vLLM's own forward."""
    (count,) = llm.collective_rpc("pruning_steps_run")
    return count


def greedy(max_tokens: int, ignore_eos: bool = False, **extra_args: Any) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=ignore_eos, extra_args=extra_args or None)


def add_request(llm: LLM, req_id: str, token_ids: list[int], params: SamplingParams) -> None:
    llm.llm_engine.add_request(req_id, TokensPrompt(prompt_token_ids=token_ids), params)


def run_requests(llm: LLM, prompts: dict[str, list[int]], params: dict[str, SamplingParams]) -> dict[str, list[int]]:
    """Add all requests, step the engine until they finish; token ids by request id."""
    engine = llm.llm_engine
    for req_id, token_ids in prompts.items():
        add_request(llm, req_id, token_ids, params[req_id])
    outputs: dict[str, list[int]] = {}
    while engine.has_unfinished_requests():
        for output in engine.step():
            if output.finished:
                outputs[output.request_id] = list(output.outputs[0].token_ids)
    return outputs


def generate_one(llm: LLM, req_id: str, prompt: list[int], max_tokens: int, **extra_args: Any) -> list[int]:
    """One greedy request through the engine alone (`ignore_eos`): its token ids."""
    params = greedy(max_tokens, ignore_eos=True, **extra_args)
    return run_requests(llm, {req_id: prompt}, {req_id: params})[req_id]


def run_counting_preemptions(llm: LLM) -> tuple[dict[str, int], int]:
    """Step until every request finishes: output lengths by request id, and the most preemptions any had."""
    engine = llm.llm_engine
    preempted = 0
    lengths: dict[str, int] = {}
    while engine.has_unfinished_requests():
        for output in engine.step():
            if output.finished:
                lengths[output.request_id] = len(output.outputs[0].token_ids)
        preempted = max([preempted, *(r.num_preemptions for r in scheduler(llm).requests.values())])
    return lengths, preempted
