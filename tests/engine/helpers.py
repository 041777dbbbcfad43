"""Reading a running in-process engine: its scheduler, block pool and pruner decisions."""

from __future__ import annotations

from typing import Any

from vllm import LLM, SamplingParams
from vllm.inputs import TokensPrompt

from asl_vllm.config import PrunerConfig
from asl_vllm.engine.scheduler import group_block_bytes
from asl_vllm.request_config import set_server_config

HAYSTACK_SENTENCES = (
    "The grass is green.",
    "The sky is blue.",
    "The sun is yellow.",
    "Here we go.",
    "There and back again.",
)


def scheduler(llm: LLM) -> Any:
    return llm.llm_engine.engine_core.engine_core.scheduler


def free_blocks(llm: LLM) -> int:
    return scheduler(llm).kv_cache_manager.block_pool.get_num_free_blocks()


def block_size(llm: LLM) -> int:
    return scheduler(llm).kv_cache_manager.coordinator.single_type_managers[0].block_size


def external_id(internal_id: str) -> str:
    """vLLM appends "-<random suffix>" to the id a caller gives `add_request`."""
    return internal_id.rsplit("-", 1)[0]


def internal_id(llm: LLM, req_id: str) -> str:
    return next(key for key in scheduler(llm).requests if external_id(key) == req_id)


def blocks_held_per_group(llm: LLM, req_id: str) -> list[int]:
    """The request's non-null blocks in each KV cache group (one group per layer bucket)."""
    key = internal_id(llm, req_id)
    managers = scheduler(llm).kv_cache_manager.coordinator.single_type_managers
    return [sum(1 for block in manager.req_to_blocks.get(key, []) if not block.is_null) for manager in managers]


def blocks_held(llm: LLM, req_id: str) -> int:
    """Pool blocks the request holds, all groups together."""
    return sum(blocks_held_per_group(llm, req_id))


def kv_bytes_held(llm: LLM, req_id: str) -> int:
    """KV bytes the request holds: comparable across group layouts, unlike block counts."""
    groups = scheduler(llm).kv_cache_config.kv_cache_groups
    return sum(count * group_block_bytes(group) for count, group in zip(blocks_held_per_group(llm, req_id), groups))


def layers_per_group(llm: LLM) -> list[int]:
    return [len(group.layer_names) for group in scheduler(llm).kv_cache_config.kv_cache_groups]


def decisions(llm: LLM) -> dict[str, dict[str, Any]]:
    """Worker-side decisions since the last call, by the caller's request id."""
    (made,) = llm.collective_rpc("take_pruner_decisions")
    return {external_id(decision["req_id"]): decision for decision in made}


def haystack_tokens(
    llm: LLM, num_tokens: int, needle: str | None = None, depth: float = 0.5, salt: str = ""
) -> list[int]:
    """A chat prompt of exactly `num_tokens` tokens: filler text, an optional needle, a question.

    A `salt` starts the text with its own words, so the prompt shares no cached prefix block.
    """
    tokenizer = llm.get_tokenizer()
    filler = salt + " ".join(HAYSTACK_SENTENCES[i % len(HAYSTACK_SENTENCES)] for i in range(num_tokens))
    filler_ids = tokenizer.encode(filler, add_special_tokens=False)
    question = "What is the special magic number mentioned in the text above?" if needle else "Summarize."
    head = tokenizer.apply_chat_template(
        [{"role": "user", "content": "\x00"}], tokenize=False, add_generation_prompt=True
    ).split("\x00")
    prefix = tokenizer.encode(head[0], add_special_tokens=False)
    suffix = tokenizer.encode(" " + question + head[1] + "The special magic number is", add_special_tokens=False)
    needle_ids = tokenizer.encode(" " + needle + " ", add_special_tokens=False) if needle else []
    body = num_tokens - len(prefix) - len(suffix) - len(needle_ids)
    assert body > 0, "prompt too short for its frame"
    cut = int(body * depth)
    return prefix + filler_ids[:cut] + needle_ids + filler_ids[cut:body] + suffix


def greedy(max_tokens: int, ignore_eos: bool = False, **extra_args: Any) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=ignore_eos, extra_args=extra_args or None)


def run_requests(llm: LLM, prompts: dict[str, list[int]], params: dict[str, SamplingParams]) -> dict[str, list[int]]:
    """Add all requests, step the engine until they finish; token ids by request id."""
    # Per-request settings are checked against the last engine built in this process: make it this one.
    set_server_config(getattr(scheduler(llm), "pruner_config", None) or PrunerConfig())
    engine = llm.llm_engine
    for req_id, token_ids in prompts.items():
        engine.add_request(req_id, TokensPrompt(prompt_token_ids=token_ids), params[req_id])
    outputs: dict[str, list[int]] = {}
    while engine.has_unfinished_requests():
        for output in engine.step():
            if output.finished:
                outputs[output.request_id] = list(output.outputs[0].token_ids)
    return outputs


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
