"""Markdown tables of the accuracy benchmarks, computed from their per-prompt records.

A record is one (config, prompt) result: `config` (its spec), `key` (the prompt), `score`
in [0, 1], the cell fields (`length`, `task`, `haystack`, ...) and the plugin's
`selection_layer`. Every pruned configuration is compared with `none` (full KV) on the
prompts both have, so a run stopped early still compares like with like.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from benchmarks.common.configs import ADAPTIVE_PRUNERS, parse
from benchmarks.common.results_file import by_config
from benchmarks.common.stats import Score, difference, score, wilson_interval

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
    ]


def selection(records: Sequence[Record]) -> list[str]:
    """Markdown lines: ASL's selection rate, then its selection layers per length."""
    return [
        "ASL's selection rate (asl configs pooled; the budget does not change the selection):",
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


def selection_rate_table(records: Sequence[Record]) -> str:
    """How often ASL chose a selection layer, per haystack, length, tau and select-k.

    Pooled over the adaptive configs (asl with or without a budget, asl two-pass): the
    budget is applied after the selection and does not change it.
    """
    groups: dict[tuple, list[int | None]] = {}
    for record in records:
        config = parse(record["config"])
        if config.pruner in ADAPTIVE_PRUNERS:
            key = (record["haystack"], record["length"], _or_default(config.tau), _or_default(config.select_k))
            groups.setdefault(key, []).append(record["selection_layer"])
    lines = [
        "| haystack | tokens | tau | select-k | selected | rate [95% interval] | layers |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (haystack, length, tau, select_k), layers in sorted(groups.items(), key=lambda item: tuple(map(str, item[0]))):
        chosen = [layer for layer in layers if layer is not None]
        low, high = wilson_interval(len(chosen) / len(layers), len(layers))
        rate = f"{100 * len(chosen) / len(layers):.0f} [{100 * low:.0f}, {100 * high:.0f}]"
        counts = f"{len(chosen)}/{len(layers)}"
        lines.append(f"| {haystack} | {length} | {tau} | {select_k} | {counts} | {rate} | {layer_counts(layers)} |")
    return "\n".join(lines)


def layer_counts(layers: Sequence[int | None]) -> str:
    """`17 x5, 18 x2, none x3`: selection layers by count ('none': no layer passed tau)."""
    counted = Counter("none" if layer is None else str(layer) for layer in layers)
    return ", ".join(f"{layer} x{count}" for layer, count in sorted(counted.items(), key=_layer_order))


def _layer_order(item: tuple[str, int]) -> tuple[int, int]:
    return (1, 0) if item[0] == "none" else (0, int(item[0]))


def selection_histograms(records: Sequence[Record]) -> dict[tuple[int, str], Counter]:
    """Selection layers of the adaptive configs per (length, tau), 'none' counted too."""
    histograms: dict[tuple[int, str], Counter] = {}
    for record in records:
        config = parse(record["config"])
        if config.pruner in ADAPTIVE_PRUNERS:
            layer = record["selection_layer"]
            key = (record["length"], _or_default(config.tau))
            histograms.setdefault(key, Counter())["none" if layer is None else layer] += 1
    return dict(sorted(histograms.items(), key=lambda item: (item[0][0], item[0][1])))


def histogram_table(records: Sequence[Record]) -> str:
    lines = ["| tokens | tau | prompts | selection layers |", "| --- | --- | --- | --- |"]
    for (length, tau), counts in selection_histograms(records).items():
        layers = [None if layer == "none" else layer for layer, count in counts.items() for _ in range(count)]
        lines.append(f"| {length} | {tau} | {sum(counts.values())} | {layer_counts(layers)} |")
    return "\n".join(lines)


def _or_default(value: Any) -> str:
    return "default" if value is None else f"{value:g}"
