"""Defaults whose change makes earlier results stale, and the test of a results file against them.

Each entry names a plugin setting whose default changed and the commit that changed it. A
results file depends on the setting when one of its configurations runs on that default: its
spec leaves the setting's key out (a budgeted `asl,B=1024` without `layers=`), or it is not a
spec at all (a server of the pressure benchmark, started on the plugin's defaults). A setting
no spec can pin (an engine setting such as the scheduler's token budget) affects every
configuration that prunes. A file
that depends on a change and was measured at a commit dated before it, or records no commit,
is stale: `python -m benchmarks.report` shows why instead of its tables. Add an entry in the
commit that changes a default.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from benchmarks.common.configs import parse


@dataclass(frozen=True)
class DefaultChange:
    flag: str
    # The Config field that pins the setting in a spec (None: no spec pins it), and whether the setting applies
    # only with a budget.
    field: str | None
    with_budget: bool
    commit: str
    date: str
    change: str


DEFAULT_CHANGES = (
    DefaultChange(
        "--kv-budget-layers", "layers", True, "c7c419e", "2026-11-30T07:17:48+00:00", "per-layer became shared"
    ),
    DefaultChange(
        "--max-num-batched-tokens",
        None,
        False,
        "a1ab16a",
        "2026-12-03T10:32:38+00:00",
        "a pruning engine keeps vLLM's token budget instead of max-model-len + 256, so a prompt longer than a step "
        "is chunked and pruned in its last chunk",
    ),
    DefaultChange(
        "the CPU attention ISA",
        None,
        False,
        "169e408",
        "2026-12-03T16:12:07+00:00",
        "a pruning engine on a host with AMX runs vLLM's amx attention kernels, as vLLM does, instead of vec",
    ),
)


def configs_of(document: dict[str, Any]) -> list[str]:
    """The configuration names a results file measured: its plan's, else its records'."""
    planned = document.get("plan", {}).get("configs")
    return list(planned) if planned else list(dict.fromkeys(record["config"] for record in document["records"]))


def runs_on_default(names: Iterable[str], change: DefaultChange) -> bool:
    """Whether any configuration leaves the changed setting to the engine's default."""
    for name in names:
        try:
            config = parse(name)
        except ValueError:  # not a spec: an engine started on the plugin's defaults
            return True
        if config.pruner_class.prunes and (config.budget is not None or not change.with_budget):
            if change.field is None or getattr(config, change.field) is None:
                return True
    return False


def stale_reasons(document: dict[str, Any], changes: Iterable[DefaultChange] = DEFAULT_CHANGES) -> list[str]:
    """Why a results file predates a default it depends on (empty: current)."""
    measured = document.get("commit_date")
    reasons = []
    for change in changes:
        if not runs_on_default(configs_of(document), change):
            continue
        if measured is None or datetime.fromisoformat(measured) < datetime.fromisoformat(change.date):
            at = f"commit {document['commit'][:7]} ({measured})" if measured else "no recorded commit"
            reasons.append(
                f"measured at {at}, before {change.flag}'s default changed ({change.change}: commit {change.commit}, "
                f"{change.date})"
            )
    return reasons
