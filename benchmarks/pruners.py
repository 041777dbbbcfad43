"""Which engine (or server) and which per-request settings run each benchmarked pruner.

Pruners that differ only in per-request settings (`vllm_xargs`: kv_pruner, kv_budget,
asl_tau, asl_select_k) share one engine started with `--kv-pruner asl` and the budget;
a pruner that needs an engine flag of its own (gemfilter, `--asl-two-pass`) gets its own
engine. An engine that refuses its settings at startup marks its pruners "not available"
with the reason, instead of stopping the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PRUNERS = ("none", "asl", "fastkv", "snapkv", "gemfilter", "asl-2pass")
# The default list: every pruner; ones this version refuses show as "not available".
DEFAULT_PRUNERS = PRUNERS
SHARED_PRUNERS = ("none", "asl", "fastkv", "snapkv")


@dataclass(frozen=True)
class PrunerRun:
    """How one pruner runs: engine settings (shared by pruners with equal ones) and request xargs."""

    name: str
    engine: dict[str, Any]
    request: dict[str, Any] = field(default_factory=dict)

    @property
    def engine_key(self) -> tuple:
        return tuple(sorted(self.engine.items()))


def pruner_settings(budget: int | None, select_k: int | None, tau: float | None) -> dict[str, Any]:
    """Engine settings every pruned configuration shares (equal budgets across pruners)."""
    settings = {"kv_budget": budget, "asl_select_k": select_k, "asl_tau": tau}
    return {key: value for key, value in settings.items() if value is not None}


def plan(names: list[str], budget: int | None, select_k: int | None, tau: float | None) -> list[PrunerRun]:
    """One PrunerRun per name, in the given order."""
    shared = {"kv_pruner": "asl", **pruner_settings(budget, select_k, tau)}
    runs = []
    for name in names:
        if name in SHARED_PRUNERS:
            runs.append(PrunerRun(name, shared, {"kv_pruner": name}))
        elif name == "gemfilter":
            runs.append(PrunerRun(name, {**shared, "kv_pruner": "gemfilter"}))
        elif name == "asl-2pass":
            runs.append(PrunerRun(name, {**shared, "asl_two_pass": True}))
        else:
            raise ValueError(f"unknown pruner {name!r} (known: {', '.join(PRUNERS)})")
    return runs


def server_flags(engine: dict[str, Any]) -> list[str]:
    """`vllm serve` flags for engine settings (`kv_budget=1024` -> `--kv-budget 1024`)."""
    flags: list[str] = []
    for key, value in engine.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is not False:
            flags += [flag, str(value)]
    return flags


def group_by_engine(runs: list[PrunerRun]) -> list[list[PrunerRun]]:
    """Runs that can share one engine, in first-seen order."""
    groups: dict[tuple, list[PrunerRun]] = {}
    for run in runs:
        groups.setdefault(run.engine_key, []).append(run)
    return list(groups.values())


def add_pruner_arguments(parser: Any, budget: int | None, select_k: int | None) -> None:
    """The pruner flags every benchmark command takes."""
    parser.add_argument(
        "--pruners",
        nargs="+",
        default=list(DEFAULT_PRUNERS),
        choices=PRUNERS,
        help="pruners to compare; one the engine refuses is recorded as not available",
    )
    parser.add_argument(
        "--budget", type=int, default=budget, help="--kv-budget of every pruner (0: no budget)"
    )
    parser.add_argument("--select-k", type=int, default=select_k, help="--asl-select-k of asl, fastkv, gemfilter")
    parser.add_argument("--tau", type=float, default=None, help="--asl-tau (default: the plugin's)")


def runs_from_arguments(args: Any) -> list[PrunerRun]:
    return plan(args.pruners, args.budget or None, args.select_k, args.tau)
