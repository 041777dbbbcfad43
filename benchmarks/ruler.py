"""RULER-style synthetic suite: a per-task score table per pruner at equal budgets.

Tasks (RULER's `synthetic.yaml`, generated offline by benchmarks/ruler_tasks.py):
niah_single_1/2/3 (number in noise, number in prose, UUID in prose), niah_single_word
(word value), niah_multikey_1/2/3 (distractor needles; 2 and 3 are haystacks made of
needles, 3 with UUID keys and values), niah_multivalue, niah_multiquery, vt (variable
tracking), cwe (common words), fwe (frequent words). Scores are RULER's string_match_all
in percent. The table also gives the selection layer(s) ASL chose per task, and marks the
tasks where the model fails even with full KV (pruners cannot be judged there).
Writes ruler.json and ruler.png.

Small default (minutes on a CPU): 1,536 tokens, 2 samples per task, budget 512, select-k 1024.
Full size, e.g.: --lengths 4096 8192 --samples 20 --budget 1024 --select-k 2048
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from typing import Any

from benchmarks.cli import load_tokenizer, model_path, parser_for, settings_of, write_results
from benchmarks.offline_runner import Request, run_all
from benchmarks.plots import grouped_bars
from benchmarks.pruners import add_pruner_arguments, runs_from_arguments
from benchmarks.ruler_tasks import TASKS, fit
from benchmarks.scoring import string_match_all

# Below this full-KV score a task says more about the model than about a pruner.
WEAK_MODEL_SCORE = 50.0
TARGET_NIAH_POINTS = 2.0
HARD_TASKS = ("niah_multikey_1", "niah_multikey_2", "niah_multikey_3", "niah_single_3")


def build_requests(
    tokenizer: Any, tasks: list[str], lengths: list[int], samples: int, max_new_tokens: int, seed: int
) -> tuple[list[Request], dict[str, list[str]]]:
    requests, answers = [], {}
    for length in lengths:
        for name in tasks:
            task = TASKS[name]
            for index in range(samples):
                prompt = fit(task, tokenizer, length, seed, index)
                key = f"{name}/{length}/{index}"
                requests.append(Request(key, prompt.token_ids, min(task.tokens_to_generate, max_new_tokens)))
                answers[key] = prompt.answers
    return requests, answers


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = parser_for(__doc__, "ruler")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--lengths", type=int, nargs="+", default=[1536], help="prompt lengths in tokens")
    parser.add_argument("--samples", type=int, default=2, help="samples per task and length")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="cap on RULER's tokens to generate")
    parser.add_argument("--seed", type=int, default=0)
    add_pruner_arguments(parser, budget=512, select_k=1024)
    args = parser.parse_args(argv)
    began = time.perf_counter()

    model = model_path(args)
    requests, answers = build_requests(
        load_tokenizer(model), args.tasks, args.lengths, args.samples, args.max_new_tokens, args.seed
    )
    max_len = max(args.lengths) + args.max_new_tokens + 64
    outcomes = run_all(model, runs_from_arguments(args), requests, max_len)

    results: dict[str, Any] = {}
    for pruner, outcome in outcomes.items():
        if not outcome.available:
            results[pruner] = {"available": False, "reason": outcome.reason}
            continue
        per_task: dict[str, Any] = {}
        for name in args.tasks:
            for length in args.lengths:
                keys = [f"{name}/{length}/{index}" for index in range(args.samples)]
                layers = [outcome.completions[key].selection_layer for key in keys]
                per_task[f"{name}/{length}"] = {
                    "score": 100.0 * statistics.mean(
                        string_match_all(outcome.completions[key].text, answers[key]) for key in keys
                    ),
                    "selection_layers": layers,
                    "outputs": [outcome.completions[key].text for key in keys],
                    "answers": [answers[key] for key in keys],
                }
        results[pruner] = {"available": True, "tasks": per_task}
    args.out.mkdir(parents=True, exist_ok=True)
    plot(results, args)
    path = write_results(args.out, "ruler", settings_of(args), results, began)
    print(table(results))
    print(targets(results))
    print(f"wrote {path} and ruler.png beside it ({time.perf_counter() - began:.0f} s)")
    return results


def _cells(results: dict[str, Any]) -> list[str]:
    first = next((r for r in results.values() if r["available"]), None)
    return list(first["tasks"]) if first else []


def selection_summary(layers: list[int | None]) -> str:
    """The layers ASL chose over a task's samples, most common first ('none': no layer passed tau)."""
    counted = Counter("none" if layer is None else str(layer) for layer in layers)
    return ", ".join(f"{layer}" + (f" x{count}" if count > 1 else "") for layer, count in counted.most_common())


def table(results: dict[str, Any]) -> str:
    """Markdown: one row per task (and length), one column per pruner, ASL's layers, a model note."""
    pruners = list(results)
    lines = [
        "| task | " + " | ".join(pruners) + " | ASL selection layer | note |",
        "| --- " * (len(pruners) + 3) + "|",
    ]
    for cell in _cells(results):
        scores = [
            f"{results[p]['tasks'][cell]['score']:.0f}" if results[p]["available"] else "n/a" for p in pruners
        ]
        asl = results.get("asl", {})
        layers = selection_summary(asl["tasks"][cell]["selection_layers"]) if asl.get("available") else "-"
        full = results.get("none", {})
        weak = full.get("available") and full["tasks"][cell]["score"] < WEAK_MODEL_SCORE
        note = "model too weak even with full KV" if weak else ""
        lines.append(f"| {cell} | " + " | ".join(scores) + f" | {layers} | {note} |")
    missing = [f"{p}: {r['reason']}" for p, r in results.items() if not r["available"]]
    if missing:
        lines.append("")
        lines.append("Not available: " + "; ".join(missing))
    return "\n".join(lines)


def _mean(results: dict[str, Any], pruner: str, prefix: tuple[str, ...]) -> float | None:
    result = results.get(pruner)
    if not result or not result["available"]:
        return None
    scores = [row["score"] for cell, row in result["tasks"].items() if cell.startswith(prefix)]
    return statistics.mean(scores) if scores else None


def targets(results: dict[str, Any]) -> str:
    """The accuracy targets, compared (printed, not asserted)."""
    lines = ["Targets (printed, not asserted):"]
    full, asl = _mean(results, "none", ("niah",)), _mean(results, "asl", ("niah",))
    if full is not None and asl is not None:
        verdict = "met" if asl >= full - TARGET_NIAH_POINTS else "NOT met"
        lines.append(f"- niah tasks: asl {asl:.1f} vs full KV {full:.1f} (within {TARGET_NIAH_POINTS:g} points: {verdict})")
    hard = _mean(results, "asl", HARD_TASKS)
    for peer in ("fastkv", "gemfilter"):
        other = _mean(results, peer, HARD_TASKS)
        if hard is None or other is None:
            lines.append(f"- multikey/UUID: asl vs {peer}: not measured ({peer} not available)")
        else:
            verdict = "met" if hard > other else "NOT met"
            lines.append(f"- multikey/UUID: asl {hard:.1f} vs {peer} {other:.1f} (higher: {verdict})")
    return "\n".join(lines)


def plot(results: dict[str, Any], args: Any) -> None:
    cells = _cells(results)
    series = {
        pruner: [result["tasks"][cell]["score"] for cell in cells]
        for pruner, result in results.items()
        if result["available"]
    }
    title = f"RULER-style tasks, budget {args.budget or 'none'} (string_match_all)"
    grouped_bars(args.out / "ruler.png", title, cells, series, "score (%)")


if __name__ == "__main__":
    main()
