"""Run one prompt set through every pruner on in-process vLLM engines (accuracy benchmarks).

Greedy decoding; each pruner group gets one engine, started once and shut down
before the next, so at most one engine lives in this process. The selection
layer each request got is read from the worker's decision log.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

from benchmarks.pruners import PrunerRun, group_by_engine  # noqa: E402


@dataclass(frozen=True)
class Request:
    key: str
    token_ids: list[int]
    max_tokens: int


@dataclass
class Completion:
    text: str
    selection_layer: int | None = None
    pruned: bool = False


@dataclass
class PrunerOutcome:
    """A pruner's completions by request key, or why the engine refused it."""

    available: bool
    reason: str = ""
    completions: dict[str, Completion] | None = None


def start_engine(model: str, engine: dict[str, Any], max_model_len: int) -> Any:
    from vllm import LLM

    return LLM(model=model, max_model_len=max_model_len, enforce_eager=True, seed=0, **engine)


def refusal(error: BaseException) -> str:
    """The one line a refused engine start says (the innermost cause's message)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}".splitlines()[0]


def run_all(model: str, runs: list[PrunerRun], requests: list[Request], max_model_len: int) -> dict[str, PrunerOutcome]:
    """Every request through every pruner; outcomes by pruner name."""
    outcomes: dict[str, PrunerOutcome] = {}
    for group in group_by_engine(runs):
        try:
            llm = start_engine(model, group[0].engine, max_model_len)
        except (Exception, SystemExit) as error:  # a refused setting stops the engine's start
            for run in group:
                outcomes[run.name] = PrunerOutcome(False, refusal(error))
            continue
        try:
            for run in group:
                outcomes[run.name] = PrunerOutcome(True, completions=generate(llm, run, requests))
        finally:
            llm.llm_engine.engine_core.shutdown()
            del llm
    return {run.name: outcomes[run.name] for run in runs}


def generate(llm: Any, run: PrunerRun, requests: list[Request]) -> dict[str, Completion]:
    """Greedy completions of `requests` under one pruner, with the decisions the worker made."""
    from tqdm import tqdm
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from benchmarks.engine_probe import decisions, scheduler

    pruning = hasattr(scheduler(llm), "pruner_config")
    if pruning:
        decisions(llm)  # drop what earlier runs left
    engine = llm.llm_engine
    for request in requests:
        params = SamplingParams(temperature=0.0, max_tokens=request.max_tokens, extra_args=run.request or None)
        engine.add_request(f"{run.name}|{request.key}", TokensPrompt(prompt_token_ids=request.token_ids), params)
    texts: dict[str, str] = {}
    made: dict[str, dict[str, Any]] = {}
    with tqdm(total=len(requests), desc=run.name, unit="req") as progress:
        while engine.has_unfinished_requests():
            for output in engine.step():
                if output.finished:
                    texts[output.request_id.split("|", 1)[1]] = output.outputs[0].text
                    progress.update()
            if pruning:
                made.update(decisions(llm))  # the worker keeps a bounded log: read it as we go
    completions = {}
    for key, text in texts.items():
        decision = made.get(f"{run.name}|{key}", {})
        completions[key] = Completion(text, decision.get("selection_layer"), bool(decision))
    return completions
