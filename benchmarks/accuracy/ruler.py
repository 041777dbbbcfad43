"""RULER-style synthetic tasks: every configuration against full KV, per task, with 95% intervals.

Tasks (RULER's `synthetic.yaml`, generated offline by benchmarks/accuracy/ruler_tasks.py):
niah_single_1/2/3 (number in noise, number in prose, UUID in prose), niah_single_word
(word value), niah_multikey_1/2/3 (distractor needles; 2 and 3 are haystacks made of
needles, 3 with UUID keys and values), niah_multivalue, niah_multiquery, vt (variable
tracking), cwe (common words), fwe (frequent words). A prompt's score is RULER's
string_match_all. A cell is (config, task): --per-cell prompts per task, spread evenly
over the lengths; scores are printed with 95% Wilson intervals, every configuration is
compared with full KV (`none`) on the same prompts, and tasks where full KV itself scores
below 50 are marked (a pruner cannot be judged there). ASL's selection rate and layers
come from the same requests. Writes ruler.json (rewritten after every answer) and ruler.png.

Small (default, minutes): multikey_1 and multivalue at 4,000 tokens, 3 prompts per cell,
full KV and ASL (tau 0.5), fastkv, gemfilter at select-k 1024.
--full: multikey_1 and multivalue at 4,000/6,000/8,000 tokens, 20 prompts per cell (7, 7
and 6 per length), full KV, ASL (tau 0.5), fastkv and gemfilter at select-k 1024 and 2048, ASL
two-pass at select-k 1024.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asl_vllm.pruners.registry import with_capability
from benchmarks.accuracy import tables
from benchmarks.accuracy.cells import interleave, task_prompts
from benchmarks.accuracy.offline_runner import Request
from benchmarks.accuracy.ruler_tasks import TASKS, fit
from benchmarks.accuracy.run import Item, add_run_arguments, plan_seconds, run
from benchmarks.common.cli import apply_preset, parser_for
from benchmarks.common.configs import add_config_arguments, configs_from_arguments, parse
from benchmarks.common.plots import grouped_bars, selection_histograms
from benchmarks.common.results_file import by_config, unavailable_lines
from benchmarks.common.stats import difference

CELLS = "(config, task): prompts spread evenly over the lengths"
SMALL_CONFIGS = ["none", "asl,k=1024,tau=0.5", "fastkv,k=1024", "gemfilter,k=1024"]
FULL_CONFIGS = [
    "none",
    "asl,k=1024,tau=0.5",
    "asl,k=2048,tau=0.5",
    "fastkv,k=1024",
    "fastkv,k=2048",
    "gemfilter,k=1024",
    "gemfilter,k=2048",
    "asl-2pass,k=1024,tau=0.5",
]
TARGET_TASKS = ["niah_multikey_1", "niah_multivalue"]
SMALL = {"tasks": TARGET_TASKS, "lengths": [4000], "per_cell": 3}
FULL = {"tasks": TARGET_TASKS, "lengths": [4000, 6000, 8000], "per_cell": 20}
# Below this full-KV score a task says more about the model than about a pruner.
WEAK_MODEL_SCORE = 50.0
FIXED_LAYER_PEERS = with_capability("reference_fixed_layer")
# The model writes about 20 tokens per value ("* **1056103** - This is the special magic number for ...").
TOKENS_PER_VALUE = 32


def parse_args(argv: list[str] | None) -> Any:
    parser = parser_for(__doc__, "benchmarks.accuracy.ruler", "ruler")
    parser.add_argument("--tasks", nargs="+", default=None, choices=list(TASKS))
    parser.add_argument("--lengths", type=int, nargs="+", default=None, help="prompt lengths in tokens")
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help=f"cap on tokens to generate (default: RULER's, at most {TOKENS_PER_VALUE} per answer value)",
    )
    parser.add_argument("--seed", type=int, default=0)
    add_run_arguments(parser)
    add_config_arguments(parser, SMALL_CONFIGS, FULL_CONFIGS)
    args = parser.parse_args(argv)
    apply_preset(args, SMALL, FULL)
    return args


def max_tokens(task: str, cap: int | None) -> int:
    """RULER's tokens to generate, at most TOKENS_PER_VALUE per answer value (greedy answers
    that keep talking after the values only cost decode time) or `cap`."""
    spec = TASKS[task]
    return min(spec.tokens_to_generate, TOKENS_PER_VALUE * spec.values, cap or spec.tokens_to_generate)


def build_items(tokenizer: Any, args: Any) -> list[Item]:
    """The prompts, tasks and lengths interleaved so that a stopped run has covered them all."""
    items = []
    prompts = task_prompts(args.tasks, args.lengths, args.per_cell)
    for prompt in interleave(prompts, lambda p: (p.task, p.length)):
        fitted = fit(TASKS[prompt.task], tokenizer, prompt.length, args.seed, prompt.index)
        fields = {"task": prompt.task, "length": prompt.length, "haystack": TASKS[prompt.task].haystack}
        request = Request(prompt.key, fitted.token_ids, max_tokens(prompt.task, args.max_new_tokens))
        items.append(Item(request, fields, fitted.answers))
    return items


def estimated_seconds(argv: list[str] | None) -> float:
    args = parse_args(argv)
    configs = configs_from_arguments(args, SMALL_CONFIGS, FULL_CONFIGS)
    prompts = task_prompts(args.tasks, args.lengths, args.per_cell)
    return plan_seconds(configs, [(p.length, max_tokens(p.task, args.max_new_tokens)) for p in prompts])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    configs = configs_from_arguments(args, SMALL_CONFIGS, FULL_CONFIGS)
    return run(args, "ruler", configs, build_items, CELLS, plot, render)


def _task(record: dict[str, Any]) -> str:
    return record["task"]


def render(document: dict[str, Any], link: str = "") -> str:
    """Markdown: scores, differences to full KV, targets, ASL's selection; `link`: the plots' folder."""
    records, settings = document["records"], document["settings"]
    tasks = settings["tasks"]
    lines = [
        f"Cells: {document['plan']['cells']}; {settings['per_cell']} prompts per cell over "
        f"{', '.join(map(str, settings['lengths']))} tokens; score: string_match_all in %, 95% Wilson interval "
        "in brackets.",
        "",
        *tables.comparison(records, _task, tasks, ""),
        "",
        weak_tasks(records, tasks),
        "",
        targets(records, tasks),
        "",
        *tables.selection(records),
        *unavailable_lines(document),
    ]
    if link:
        lines += ["", f"![ruler]({link}/ruler.png)"]
        if tables.selection_histograms(records):
            lines.append(f"![selection]({link}/selection.png)")
    return "\n".join(lines)


def weak_tasks(records: Sequence[dict[str, Any]], tasks: Sequence[str]) -> str:
    """The tasks full KV itself fails (score below WEAK_MODEL_SCORE), where no pruner can be judged."""
    full = [r for r in records if r["config"] == tables.FULL_KV]
    weak = []
    for task in tasks:
        found = tables.cell_score([r for r in full if r["task"] == task])
        if found and found.mean < WEAK_MODEL_SCORE:
            weak.append(f"{task} ({found})")
    return "Full KV below 50 (the model, not the pruner): " + (", ".join(weak) if weak else "no task")


def targets(records: Sequence[dict[str, Any]], tasks: Sequence[str]) -> str:
    """ASL at or above fastkv and gemfilter at equal select-k, per task (printed, not asserted)."""
    lines = ["Targets (printed, not asserted): ASL at or above fastkv and gemfilter at equal select-k:"]
    configs = {name: parse(name) for name in by_config(records)}
    for task in (t for t in tasks if t.startswith(("niah_multikey", "niah_multivalue"))):
        in_task = [r for r in records if r["task"] == task]
        for name, config in configs.items():
            if not config.pruner_class.adaptive or config.two_pass:
                continue
            mine = [r for r in in_task if r["config"] == name]
            for peer_name, peer in configs.items():
                if (
                    peer.pruner not in FIXED_LAYER_PEERS
                    or peer.select_k != config.select_k
                    or peer.budget != config.budget
                ):
                    continue
                pair = tables.paired(mine, [r for r in in_task if r["config"] == peer_name])
                if pair:
                    verdict = "met" if pair[0].mean >= pair[1].mean else "NOT met"
                    lines.append(f"- {task}: {name} {pair[0]} vs {peer_name} {pair[1]}, {difference(*pair)}: {verdict}")
    return "\n".join(lines) if len(lines) > 1 else lines[0] + " not measured"


def plot(document: dict[str, Any], out: Any) -> None:
    """Bars per task and config with their 95% intervals, and the selection histograms."""
    records, tasks = document["records"], document["settings"]["tasks"]
    series, intervals = {}, {}
    for config, mine in by_config(records).items():
        scores = [tables.cell_score([r for r in mine if r["task"] == task]) for task in tasks]
        series[config] = [s.mean if s else None for s in scores]
        intervals[config] = [(s.low, s.high) if s else None for s in scores]
    grouped_bars(
        out / "ruler.png",
        "RULER-style tasks (string_match_all, 95% Wilson intervals)",
        tasks,
        series,
        "score (%)",
        intervals,
    )
    histograms = tables.selection_histograms(records)
    if histograms:
        selection_histograms(out / "selection.png", "ASL's selection layer (RULER-style prompts)", histograms)


if __name__ == "__main__":
    main()
