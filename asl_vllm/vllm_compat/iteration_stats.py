"""The decision reports of a step's new and finished requests, kept on the step's `IterationStats` for stat loggers.

vLLM 0.32: `IterationStats.update_from_output` (vllm/v1/metrics/stats.py). Stat
loggers get no per-request engine output, so the wrapper keeps each report on
a request's first output (`kv_transfer_params["kv_pruner"]`) and on its last
(which adds what happened while it ran: shrinks, preemptions avoided) in two
attributes of the step's stats, which `asl_vllm.metrics.PrunerPrometheusStatLogger`
reads through `iteration_reports` and `finished_reports`.
"""

from __future__ import annotations

import functools
from typing import Any

from asl_vllm.report_key import REPORT_KEY
from asl_vllm.vllm_compat.patching import is_patched, marked

# IterationStats attributes: the reports of requests whose first (last) output is in this step.
ITERATION_REPORTS_ATTR = "kv_pruner_reports"
FINISHED_REPORTS_ATTR = "kv_pruner_finished_reports"


def wrap_iteration_stats() -> None:
    from vllm.v1.metrics.stats import IterationStats

    original = IterationStats.update_from_output
    if is_patched(original):
        return

    @marked
    @functools.wraps(original)
    def update_from_output(
        self: Any, output: Any, engine_core_timestamp: float, is_prefilling: bool, *args: Any, **kwargs: Any
    ) -> None:
        original(self, output, engine_core_timestamp, is_prefilling, *args, **kwargs)
        if not output.kv_transfer_params or REPORT_KEY not in output.kv_transfer_params:
            return
        if is_prefilling:
            self.__dict__.setdefault(ITERATION_REPORTS_ATTR, []).append(output.kv_transfer_params[REPORT_KEY])
        if output.finished:
            self.__dict__.setdefault(FINISHED_REPORTS_ATTR, []).append(output.kv_transfer_params[REPORT_KEY])

    IterationStats.update_from_output = update_from_output


def iteration_reports(iteration_stats: Any) -> list[dict[str, Any]]:
    """The reports `update_from_output` kept on one step's stats (none when no new request reported)."""
    return getattr(iteration_stats, ITERATION_REPORTS_ATTR, [])


def finished_reports(iteration_stats: Any) -> list[dict[str, Any]]:
    """The last reports of the requests that finished in this step."""
    return getattr(iteration_stats, FINISHED_REPORTS_ATTR, [])
