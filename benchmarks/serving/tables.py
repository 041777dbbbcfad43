"""Markdown tables and targets of the serving benchmark, computed from its records.

Records: `load` (one wave: mean TTFT and TPOT over its clients, output tokens/s),
`kv` (share of the pool and bytes one request holds once its first token has streamed, and
its decision report) and `capacity`.
A timing is the median over the repeats of a level, shown with its range; ratios are to
`none`, unmodified vLLM in its default mode, measured in the same run.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from benchmarks.common.results_file import by_config

BASELINE = "none"
TARGET_KV_FRACTION = 1 / 6
TARGET_CAPACITY_RATIO = 5.0
Record = dict[str, Any]


def level_medians(records: Sequence[Record]) -> dict[str, dict[tuple[int, int], dict[str, Any]]]:
    """Per config and (length, clients): median and range of each timing over the repeats."""
    summary: dict[str, dict[tuple[int, int], dict[str, Any]]] = {}
    for config, mine in by_config([r for r in records if r["kind"] == "load"]).items():
        levels: dict[tuple[int, int], list[Record]] = {}
        for record in mine:
            levels.setdefault((record["length"], record["clients"]), []).append(record)
        summary[config] = {}
        for level, waves in levels.items():
            row: dict[str, Any] = {"repeats": len(waves)}
            for metric in ("ttft_s", "tpot_s", "tokens_per_s"):
                values = [w[metric] for w in waves if w[metric] is not None]
                row[metric] = (statistics.median(values), min(values), max(values)) if values else None
            summary[config][level] = row
    return summary


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}" if value is not None and base else "-"


def _timing(value: tuple[float, float, float] | None, scale: float, digits: int) -> str:
    if value is None:
        return "-"
    median, low, high = (v * scale for v in value)
    return f"{median:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def load_table(records: Sequence[Record]) -> str:
    medians = level_medians(records)
    base = medians.get(BASELINE, {})
    lines = [
        "| config | tokens x clients | repeats | TTFT s | x none | TPOT ms | x none | output tok/s | x none |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for config, levels in medians.items():
        for (length, clients), row in levels.items():
            ref = base.get((length, clients), {})
            cells = []
            for metric, scale, digits in (("ttft_s", 1, 2), ("tpot_s", 1000, 1), ("tokens_per_s", 1, 1)):
                mine, theirs = row[metric], ref.get(metric)
                cells += [_timing(mine, scale, digits), _ratio(mine and mine[0], theirs and theirs[0])]
            lines.append(f"| {config} | {length} x {clients} | {row['repeats']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _one(records: Sequence[Record], config: str, kind: str, length: int | None = None) -> Record | None:
    return next(
        (
            r
            for r in records
            if r["config"] == config and r["kind"] == kind and (length is None or r["length"] == length)
        ),
        None,
    )


def kept_tokens(held: Record) -> str:
    """`kept / prompt` tokens from the record's decision report; `-` from a server without a pruner."""
    report = held.get("report")
    return f"{report['kept_tokens']:,} / {report['prompt_tokens']:,}" if report else "-"


def memory_table(records: Sequence[Record]) -> str:
    lines = [
        "| config | tokens | KV MiB after prefill | x none | kept tokens (report) | most running before preemption "
        "| x none | preemptions |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for config in by_config([r for r in records if r["kind"] in ("kv", "capacity")]):
        filled, base_fill = _one(records, config, "capacity"), _one(records, BASELINE, "capacity")
        most = filled["max_running_before_preemption"] if filled else None
        base_most = base_fill["max_running_before_preemption"] if base_fill else None
        for held in (r for r in records if r["config"] == config and r["kind"] == "kv"):
            ref = _one(records, BASELINE, "kv", held["length"])
            mib = "-" if held["kv_bytes"] is None else f"{held['kv_bytes'] / 2**20:.1f}"
            lines.append(
                f"| {config} | {held['length']} | {mib} | {_ratio(held['kv_bytes'], ref and ref['kv_bytes'])} | "
                f"{kept_tokens(held)} | {'-' if most is None else most} | "
                f"{_ratio(most, base_most)} | {filled['preemptions'] if filled else '-'} |"
            )
    return "\n".join(lines)


def targets(records: Sequence[Record], config: str, capacity_length: int) -> str:
    """The serving targets for one pruned config against none (printed, not asserted)."""
    held, base_held = _one(records, config, "kv", capacity_length), _one(records, BASELINE, "kv", capacity_length)
    filled, base_fill = _one(records, config, "capacity"), _one(records, BASELINE, "capacity")
    if not (held and base_held and filled and base_fill) or None in (held["kv_bytes"], base_held["kv_bytes"]):
        return f"Targets: not measured (needs {config} and {BASELINE})"
    kv = held["kv_bytes"] / max(base_held["kv_bytes"], 1)
    fill = filled["max_running_before_preemption"] / max(base_fill["max_running_before_preemption"], 1)
    lines = [
        f"Targets for {config} at {capacity_length} tokens (printed, not asserted; stated for 8192 tokens, "
        "budget 1024):",
        f"- KV after prefill: {kv:.3f} of none (<= {TARGET_KV_FRACTION:.3f}: {_verdict(kv <= TARGET_KV_FRACTION)})",
        f"- capacity in one pool: {fill:.2f}x none (>= {TARGET_CAPACITY_RATIO:g}x: "
        f"{_verdict(fill >= TARGET_CAPACITY_RATIO)})",
    ]
    medians = level_medians(records)
    for metric in ("ttft_s", "tpot_s"):
        ratios = [
            row[metric][0] / medians[BASELINE][level][metric][0]
            for level, row in medians.get(config, {}).items()
            if row[metric] and level in medians.get(BASELINE, {}) and medians[BASELINE][level][metric]
        ]
        if ratios:
            worst = max(ratios)
            name = metric[:-2].upper()
            lines.append(f"- {name} median: worst over the levels {worst:.2f}x none (<= 1: {_verdict(worst <= 1)})")
    return "\n".join(lines)


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"
