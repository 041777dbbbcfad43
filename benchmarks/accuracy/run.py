"""What the accuracy benchmarks share: their run flags, the time plan, and recording every result as it comes.

Each benchmark builds its prompts (one `Request` per prompt, with the fields that place it in
its cell and its reference answers); this module prints the plan and its estimated time,
runs every configuration on them and appends one scored record per finished request to the
results file, which is rewritten each time (see common/results_file.py).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.accuracy.cells import cell_note
from benchmarks.accuracy.offline_runner import Completion, Request, run_all
from benchmarks.accuracy.scoring import string_match_all
from benchmarks.common.cli import CONTEXT_MARGIN, load_tokenizer, model_path, settings_of
from benchmarks.common.configs import Config, group_by_engine
from benchmarks.common.results_file import ResultsFile
from benchmarks.common.time_estimate import Work, describe, estimate


@dataclass(frozen=True)
class Item:
    """One prompt: the request, the fields placing it in its cell, the strings a right answer holds."""

    request: Request
    fields: dict[str, Any]
    answers: list[str]


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--full", action="store_true", help="the full-size preset instead of the small one")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the results already in --out for the same settings and run only what is missing",
    )
    parser.add_argument("--per-cell", type=int, default=None, help="prompts per cell (default: the preset's)")
    parser.add_argument(
        "--max-num-batched-tokens",
        type=int,
        default=None,
        help="tokens per engine step for every engine (default: vLLM's); a longer prompt is chunked and pruned in its "
        "last chunk; engines of two-pass pruners get --max-model-len, since they prune only prompts a step holds whole",
    )


def plan_work(configs: list[Config], items: list[Item]) -> list[Work]:
    return [Work(config, len(item.request.token_ids), item.request.max_tokens) for config in configs for item in items]


def plan_seconds(configs: list[Config], lengths_and_tokens: list[tuple[int, int]]) -> float:
    """Estimated seconds for every config on prompts of the given (length, max tokens)."""
    work = [Work(config, length, tokens) for config in configs for length, tokens in lengths_and_tokens]
    return estimate(work, len(group_by_engine(configs)))


def run(
    args: argparse.Namespace,
    benchmark: str,
    configs: list[Config],
    build_items: Callable[[Any, argparse.Namespace], list[Item]],
    cells: str,
    plot: Callable[[dict[str, Any], Path], None],
    render: Callable[[dict[str, Any]], str],
) -> dict[str, Any]:
    """A whole accuracy benchmark: prompts, every config, the plots and the tables printed."""
    began = time.perf_counter()
    model = model_path(args)
    document = execute(args, benchmark, model, configs, build_items(load_tokenizer(model), args), cells)
    plot(document, args.out)
    print(render(document))
    print(f"wrote {args.out / f'{benchmark}.json'} and the plots beside it ({time.perf_counter() - began:.0f} s)")
    return document


def execute(
    args: argparse.Namespace,
    benchmark: str,
    model: str,
    configs: list[Config],
    items: list[Item],
    cells: str,
) -> dict[str, Any]:
    """Run, record and return the results document."""
    seconds = plan_seconds(configs, [(len(i.request.token_ids), i.request.max_tokens) for i in items])
    plan = {
        "cells": cells,
        "prompts_per_cell": args.per_cell,
        "configs": [config.name for config in configs],
        "requests": len(configs) * len(items),
        "estimated_seconds": round(seconds),
    }
    print(f"{benchmark}: {len(configs)} configs x {len(items)} prompts; cells {cells}, {cell_note(args.per_cell)}")
    print(f"{benchmark}: estimated {describe(seconds)} on the reference 2-core CPU")
    results = ResultsFile(args.out / f"{benchmark}.json", benchmark, settings_of(args), plan, args.resume)
    by_key = {item.request.key: item for item in items}

    def done(config: Config, request: Request, completion: Completion) -> None:
        item = by_key[request.key]
        results.add(
            {
                "config": config.name,
                "key": request.key,
                **item.fields,
                "score": string_match_all(completion.text, item.answers),
                "answers": item.answers,
                "output": completion.text,
                "selection_layer": completion.selection_layer,
                "decision": completion.decision,
            }
        )

    def refused(config: Config, reason: str) -> None:
        print(f"{config.name}: not available ({reason})")
        results.unavailable(config.name, reason)

    max_len = max(len(i.request.token_ids) + i.request.max_tokens for i in items) + CONTEXT_MARGIN
    scheduler = {} if args.max_num_batched_tokens is None else {"max_num_batched_tokens": args.max_num_batched_tokens}
    run_all(model, configs, [item.request for item in items], max_len, results.done(), done, refused, scheduler)
    return results.finish()
