"""Needle in a haystack: context length x needle depth, per pruner, with a heatmap per pruner.

One needle ("The special magic number is: 4812093." or a UUID) sits at each depth of
haystacks of each length: RULER's repeated noise sentences, or English prose (CPython's
own documentation, shipped with Python). The model answers greedily after "The special
magic ... is"; a cell scores 100 when the needle's value is in the answer
(string_match_all). Every pruner runs at the same --kv-budget; one whose engine refuses
its settings is recorded as not available. Writes niah.json and niah_<pruner>.png.

Small default (minutes on a CPU): 1k and 2k tokens, 3 depths, budget 512, select-k 1024.
Full size, e.g.: --lengths 2000 4000 6000 8000 --depths 0 0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.9 1
--budget 1024 --select-k 2048
"""

from __future__ import annotations

import random
import time
from typing import Any

from benchmarks.chat_prompt import needle_prompt
from benchmarks.cli import load_tokenizer, model_path, parser_for, settings_of, write_results
from benchmarks.offline_runner import Request, run_all
from benchmarks.plots import Heatmap, heatmaps
from benchmarks.pruners import add_pruner_arguments, runs_from_arguments
from benchmarks.scoring import string_match_all
from benchmarks.text_sources import HAYSTACK_KINDS, haystack_text, random_value

NEEDLE_NAMES = {"number": "number", "uuid": "UUID", "word": "word"}


def cell_key(haystack: str, needle: str, length: int, depth: float) -> str:
    return f"{haystack}/{needle}/{length}/{depth:g}"


def build_requests(
    tokenizer: Any, haystacks: list[str], needles: list[str], lengths: list[int], depths: list[float],
    max_tokens: int, seed: int,
) -> tuple[list[Request], dict[str, str]]:
    """One request per grid cell, and each cell's needle value."""
    requests, values = [], {}
    for haystack in haystacks:
        for needle in needles:
            name = NEEDLE_NAMES[needle]
            for length in lengths:
                filler = haystack_text(haystack, length)
                for depth in depths:
                    key = cell_key(haystack, needle, length, depth)
                    value = random_value(needle, random.Random(f"{seed}-{key}"))
                    token_ids = needle_prompt(
                        tokenizer, length, filler, f"The special magic {name} is: {value}.", depth,
                        f"What is the special magic {name} mentioned in the text above?",
                        f"The special magic {name} is", at_sentence=True,
                    )
                    requests.append(Request(key, token_ids, max_tokens))
                    values[key] = value
    return requests, values


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = parser_for(__doc__, "niah")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048], help="context lengths in tokens")
    parser.add_argument("--depths", type=float, nargs="+", default=[0.0, 0.5, 1.0], help="needle depths in [0, 1]")
    parser.add_argument("--haystacks", nargs="+", default=list(HAYSTACK_KINDS), choices=HAYSTACK_KINDS)
    parser.add_argument("--needles", nargs="+", default=["number", "uuid"], choices=list(NEEDLE_NAMES))
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    add_pruner_arguments(parser, budget=512, select_k=1024)
    args = parser.parse_args(argv)
    began = time.perf_counter()

    model = model_path(args)
    requests, values = build_requests(
        load_tokenizer(model), args.haystacks, args.needles, args.lengths, args.depths, args.max_new_tokens, args.seed
    )
    outcomes = run_all(model, runs_from_arguments(args), requests, max(args.lengths) + args.max_new_tokens + 64)

    results: dict[str, Any] = {}
    args.out.mkdir(parents=True, exist_ok=True)
    for pruner, outcome in outcomes.items():
        if not outcome.available:
            results[pruner] = {"available": False, "reason": outcome.reason}
            print(f"{pruner}: not available ({outcome.reason})")
            continue
        cells = {
            key: {
                "score": 100.0 * string_match_all(completion.text, [values[key]]),
                "answer": values[key],
                "output": completion.text,
                "selection_layer": completion.selection_layer,
            }
            for key, completion in outcome.completions.items()
        }
        panels = []
        for haystack in args.haystacks:
            for needle in args.needles:
                grid = [
                    [cells[cell_key(haystack, needle, length, depth)]["score"] for length in args.lengths]
                    for depth in args.depths
                ]
                panels.append(Heatmap(f"{haystack} haystack, {NEEDLE_NAMES[needle]} needle", args.lengths, args.depths, grid))
        mean = sum(cell["score"] for cell in cells.values()) / len(cells)
        kv = "full KV" if pruner == "none" else f"budget {args.budget or 'none'}"
        plot = heatmaps(args.out / f"niah_{pruner}.png", f"{pruner} ({kv}): mean {mean:.0f}%", panels)
        results[pruner] = {"available": True, "mean_score": mean, "cells": cells, "plot": plot.name}
    path = write_results(args.out, "niah", settings_of(args), results, began)
    print(table(results, args.haystacks, args.needles))
    print(f"wrote {path} and the heatmaps beside it ({time.perf_counter() - began:.0f} s)")
    return results


def table(results: dict[str, Any], haystacks: list[str], needles: list[str]) -> str:
    """Markdown: mean score per pruner and haystack/needle kind."""
    combos = [(haystack, needle) for haystack in haystacks for needle in needles]
    lines = [
        "| pruner | " + " | ".join(f"{h} / {NEEDLE_NAMES[n]}" for h, n in combos) + " | mean |",
        "| --- " * (len(combos) + 2) + "|",
    ]
    for pruner, result in results.items():
        if not result["available"]:
            lines.append(f"| {pruner} | " + " | ".join("n/a" for _ in combos) + " | not available |")
            continue
        scores = []
        for haystack, needle in combos:
            cells = [cell["score"] for key, cell in result["cells"].items() if key.startswith(f"{haystack}/{needle}/")]
            scores.append(f"{sum(cells) / len(cells):.0f}")
        lines.append(f"| {pruner} | " + " | ".join(scores) + f" | {result['mean_score']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
