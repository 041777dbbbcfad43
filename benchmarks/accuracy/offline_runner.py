"""Run one prompt set through every configuration on in-process vLLM engines (accuracy benchmarks).

Greedy decoding in vLLM's default execution mode (the plugin decides what a pruner
needs). Configurations that share an engine run together, prompt by prompt (every
configuration of the engine on prompt 1, then on prompt 2, ...), so a run stopped
early has compared them on the same prompts; each engine is shut down before the
next starts, so at most one lives in this process. Each request's decision (selection
layer, kept tokens) is the report the plugin attaches to its output.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

from asl_vllm.report_key import REPORT_KEY  # noqa: E402
from benchmarks.common.configs import Config, group_by_engine, request_args  # noqa: E402


@dataclass(frozen=True)
class Request:
    key: str
    token_ids: list[int]
    max_tokens: int


@dataclass
class Completion:
    text: str
    decision: dict[str, Any] = field(default_factory=dict)

    @property
    def selection_layer(self) -> int | None:
        return self.decision.get("selection_layer")


Done = Callable[[Config, Request, Completion], None]
Refused = Callable[[Config, str], None]


def start_engine(model: str, engine: dict[str, Any], max_model_len: int) -> Any:
    from vllm import LLM

    return LLM(model=model, max_model_len=max_model_len, seed=0, **engine)


def refusal(error: BaseException) -> str:
    """The one line a refused engine start or request says (the innermost cause's message)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}".splitlines()[0]


def run_all(
    model: str,
    configs: list[Config],
    requests: list[Request],
    max_model_len: int,
    done: set[tuple[str, str]],
    on_done: Done,
    on_refused: Refused,
    scheduler: dict[str, Any] | None = None,
) -> None:
    """Every request through every config, skipping (config name, request key) pairs in `done`.

    `scheduler`: engine settings every engine gets (e.g. `max_num_batched_tokens`)."""
    for engine, group in group_by_engine(configs):
        runnable = list(group)
        engine = {**engine, **(scheduler or {})}
        if any(config.two_pass or config.pruner_class.two_pass for config in runnable):
            # A two-pass pruner prunes only a prompt its step holds whole (asl_vllm.engine.prefill_plan.runs_whole).
            engine = {**engine, "max_num_batched_tokens": max_model_len}
        pending = [(c, r) for r in requests for c in runnable if (c.name, r.key) not in done]
        if not pending:
            continue
        try:
            llm = start_engine(model, engine, max_model_len)
        except (Exception, SystemExit) as error:  # a refused setting stops the engine's start
            for config in runnable:
                on_refused(config, refusal(error))
            continue
        try:
            generate(llm, engine, pending, on_done, on_refused)
        finally:
            llm.llm_engine.engine_core.shutdown()
            del llm


def generate(
    llm: Any, engine: dict[str, Any], pending: list[tuple[Config, Request]], on_done: Done, on_refused: Refused
) -> None:
    """Greedy completions of the pending (config, request) pairs, reported as each one finishes."""
    from tqdm import tqdm
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    core = llm.llm_engine
    refused: set[str] = set()
    sent: dict[str, tuple[Config, Request]] = {}
    for number, (config, request) in enumerate(pending):
        if config.name in refused:
            continue
        params = SamplingParams(
            temperature=0.0, max_tokens=request.max_tokens, extra_args=request_args(config, engine) or None
        )
        try:
            core.add_request(f"r{number}", TokensPrompt(prompt_token_ids=request.token_ids), params)
        except Exception as error:  # a per-request setting this engine refuses
            refused.add(config.name)
            on_refused(config, refusal(error))
            continue
        sent[f"r{number}"] = (config, request)
    with tqdm(total=len(sent), desc="+".join(sorted({c.pruner for c, _ in sent.values()})), unit="req") as progress:
        while core.has_unfinished_requests():
            for output in core.step():
                if output.finished and output.request_id in sent:
                    config, request = sent[output.request_id]
                    report = (output.kv_transfer_params or {}).get(REPORT_KEY, {})
                    on_done(config, request, Completion(output.outputs[0].text, report))
                    progress.update()
