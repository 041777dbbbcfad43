"""Markdown tables of the accuracy benchmarks, computed from their per-prompt records.

A record is one (config, prompt) result: `config` (its spec), `key` (the prompt), `score`
in [0, 1], the cell fields (`length`, `task`, `haystack`, ...) and the plugin's
`selection_layer`, its `output` and its `decision` report. Every pruned configuration is
compared with `none` (full KV) on the prompts both have, so a run stopped early still
compares like with like, and every count is of distinct prompts: configurations sharing
prompts are not independent samples.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from benchmarks.common.configs import ADAPTIVE_PRUNERS, parse
from benchmarks.common.results_file import by_config
from benchmarks.common.stats import Score, difference, score, sign_test, wilson_interval

FULL_KV = "none"
Record = dict[str, Any]


def cell_score(records: Sequence[Record], keys: set[str] | None = None) -> Score | None:
    """The Score of the records (restricted to prompt `keys`), None when none is left."""
    values = [r["score"] for r in records if keys is None or r["key"] in keys]
    return score(values) if values else None


def _cells(records: Sequence[Record], cell: Callable[[Record], Hashable]) -> dict[Hashable, list[Record]]:
    grouped: dict[Hashable, list[Record]] = {}
    for record in records:
        grouped.setdefault(cell(record), []).append(record)
    return grouped


def score_table(
    records: Sequence[Record], cell: Callable[[Record], Hashable], columns: Sequence[Hashable], label: str
) -> str:
    """One row per config, one column per cell: `mean [95% interval]` and the prompts scored."""
    lines = [
        _header(columns, label),
    ]
    for config, mine in by_config(records).items():
        cells = _cells(mine, cell)
        shown = []
        for column in columns:
            found = cell_score(cells.get(column, []))
            shown.append(f"{found} (n={found.n})" if found else "-")
        lines.append(f"| {config} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def difference_table(
    records: Sequence[Record], cell: Callable[[Record], Hashable], columns: Sequence[Hashable], label: str
) -> str:
    """Points each config scores above (+) or below (-) full KV on the same prompts, per cell,
    with both intervals; a difference is read as one only where the intervals do not overlap."""
    configs = by_config(records)
    full = _cells(configs.get(FULL_KV, []), cell)
    lines = [
        _header(columns, label),
    ]
    for config, mine in configs.items():
        if config == FULL_KV:
            continue
        cells = _cells(mine, cell)
        shown = []
        for column in columns:
            pair = paired(cells.get(column, []), full.get(column, []))
            shown.append(f"{difference(*pair)}: {pair[0]} vs {pair[1]}" if pair else "-")
        lines.append(f"| {config} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def _header(columns: Sequence[Hashable], label: str) -> str:
    titles = [f"{label} {column}".strip() for column in columns]
    return "| config | " + " | ".join(titles) + " |\n" + "| --- " * (len(columns) + 1) + "|"


def comparison(
    records: Sequence[Record], cell: Callable[[Record], Hashable], columns: Sequence[Hashable], label: str
) -> list[str]:
    """Markdown lines: the score table, then the differences to full KV."""
    return [
        score_table(records, cell, columns, label),
        "",
        "Difference to full KV on the same prompts (points; full KV's score after 'vs'):",
        "",
        difference_table(records, cell, columns, label),
        "",
        "Paired with full KV, all cells pooled (better / worse: prompts where the config scores above / below "
        "full KV; p: two-sided sign test), and the noise floor: on the prompts where the config pruned nothing, "
        "how many outputs equal full KV's:",
        "",
        paired_table(records),
    ]


def selection(records: Sequence[Record]) -> list[str]:
    """Markdown lines: ASL's selection rate, then its selection layers per length."""
    return [
        "ASL's selection rate (asl configs with the same tau and select-k pooled per prompt, each prompt counted "
        "once; the budget does not change the selection):",
        "",
        selection_rate_table(records),
        "",
        "ASL's selection layers per length:",
        "",
        histogram_table(records),
    ]


def paired(mine: Sequence[Record], full: Sequence[Record]) -> tuple[Score, Score] | None:
    """(config's Score, full KV's Score) on the prompts both have; None when they share none."""
    common = {r["key"] for r in mine} & {r["key"] for r in full}
    if not common:
        return None
    return cell_score(mine, common), cell_score(full, common)


def paired_table(records: Sequence[Record]) -> str:
    """Per config, against full KV on the same prompts: better, worse, the sign test's p, and the noise floor
    (outputs equal to full KV's where the config's decision pruned nothing)."""
    configs = by_config(records)
    full = {r["key"]: r for r in configs.get(FULL_KV, [])}
    lines = [
        "| config | prompts | better | worse | sign test p | nothing pruned | same output there |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for config, mine in configs.items():
        if config == FULL_KV:
            continue
        shared = [(r, full[r["key"]]) for r in mine if r["key"] in full]
        better = sum(r["score"] > theirs["score"] for r, theirs in shared)
        worse = sum(r["score"] < theirs["score"] for r, theirs in shared)
        unpruned = [(r, theirs) for r, theirs in shared if pruned_nothing(r)]
        same = sum(r.get("output") == theirs.get("output") for r, theirs in unpruned)
        floor = f"{same}/{len(unpruned)}" if unpruned else "-"
        lines.append(
            f"| {config} | {len(shared)} | {better} | {worse} | {sign_test(better, worse):.2g} | {len(unpruned)} "
            f"| {floor} |"
        )
    return "\n".join(lines)


def pruned_nothing(record: Record) -> bool:
    """Whether the record's decision report says no layer's KV was cut (False without a report)."""
    decision = record.get("decision") or {}
    return decision.get("pruned") is False


def prompt_layer(layers: Sequence[int | None]) -> int | None:
    """A prompt's selection layer over the configs that ran it: the most frequent (the first seen on a tie)."""
    return Counter(layers).most_common(1)[0][0]


def selection_rate_table(records: Sequence[Record]) -> str:
    """How often ASL chose a selection layer, per haystack, length, tau and select-k, counting each prompt once.

    The adaptive configs (asl with or without a budget, asl two-pass) that share tau and
    select-k are pooled per prompt, since the budget is applied after the selection and does not
    change it: n is the number of distinct prompts, and a prompt on which those configs chose
    different layers is counted by the most frequent and reported as a disagreement.
    """
    groups: dict[tuple, dict[str, list[int | None]]] = {}
    for record in records:
        config = parse(record["config"])
        if config.pruner in ADAPTIVE_PRUNERS:
            key = (record["haystack"], record["length"], _or_default(config.tau), _or_default(config.select_k))
            groups.setdefault(key, {}).setdefault(record["key"], []).append(record["selection_layer"])
    lines = [
        "| haystack | tokens | tau | select-k | selected (distinct prompts) | rate [95% interval] | layers |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (haystack, length, tau, select_k), prompts in sorted(groups.items(), key=lambda item: tuple(map(str, item[0]))):
        layers = [prompt_layer(seen) for seen in prompts.values()]
        chosen = [layer for layer in layers if layer is not None]
        low, high = wilson_interval(len(chosen) / len(layers), len(layers))
        rate = f"{100 * len(chosen) / len(layers):.0f} [{100 * low:.0f}, {100 * high:.0f}]"
        disagree = sum(len(set(seen)) > 1 for seen in prompts.values())
        shown = layer_counts(layers) + (f"; configs disagree on {disagree}" if disagree else "")
        lines.append(f"| {haystack} | {length} | {tau} | {select_k} | {len(chosen)}/{len(layers)} | {rate} | {shown} |")
    return "\n".join(lines)


def layer_counts(layers: Sequence[int | None]) -> str:
    """`17 x5, 18 x2, none x3`: selection layers by count ('none': no layer passed tau)."""
    counted = Counter("none" if layer is None else str(layer) for layer in layers)
    return ", ".join(f"{layer} x{count}" for layer, count in sorted(counted.items(), key=_layer_order))


def _layer_order(item: tuple[str, int]) -> tuple[int, int]:
    return (1, 0) if item[0] == "none" else (0, int(item[0]))


def selection_histograms(records: Sequence[Record]) -> dict[tuple[int, str], Counter]:
    """Selection layers of the adaptive configs per (length, tau), each distinct prompt once per select-k (which
    moves the selection) and 'none' counted too."""
    prompts: dict[tuple[int, str], dict[tuple[str, str], list[int | None]]] = {}
    for record in records:
        config = parse(record["config"])
        if config.pruner in ADAPTIVE_PRUNERS:
            key = (record["length"], _or_default(config.tau))
            prompt = (record["key"], _or_default(config.select_k))
            prompts.setdefault(key, {}).setdefault(prompt, []).append(record["selection_layer"])
    histograms = {}
    for key, seen in prompts.items():
        layers = [prompt_layer(layers) for layers in seen.values()]
        histograms[key] = Counter("none" if layer is None else layer for layer in layers)
    return dict(sorted(histograms.items(), key=lambda item: (item[0][0], item[0][1])))


def histogram_table(records: Sequence[Record]) -> str:
    lines = ["| tokens | tau | distinct prompts (x select-k) | selection layers |", "| --- | --- | --- | --- |"]
    for (length, tau), counts in selection_histograms(records).items():
        layers = [None if layer == "none" else layer for layer, count in counts.items() for _ in range(count)]
        lines.append(f"| {length} | {tau} | {sum(counts.values())} | {layer_counts(layers)} |")
    return "\n".join(lines)


def _or_default(value: Any) -> str:
    return "default" if value is None else f"{value:g}"
