"""The decision reports of a step's new requests, kept on the step's `IterationStats` for stat loggers.

vLLM 0.32: `IterationStats.update_from_output` (vllm/v1/metrics/stats.py). Stat
loggers get no per-request engine output, so the wrapper keeps each report on
a request's first output (`kv_transfer_params["kv_pruner"]`) in an attribute of
the step's stats, which `asl_vllm.metrics.PrunerPrometheusStatLogger` reads
through `iteration_reports`.
"""

from __future__ import annotations

import functools
from typing import Any

from asl_vllm.engine.decisions import REPORT_KEY
from asl_vllm.vllm_compat.patching import is_patched, marked

# IterationStats attribute: the reports of requests whose first output is in this step.
ITERATION_REPORTS_ATTR = "kv_pruner_reports"


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
        if is_prefilling and output.kv_transfer_params and REPORT_KEY in output.kv_transfer_params:
            self.__dict__.setdefault(ITERATION_REPORTS_ATTR, []).append(output.kv_transfer_params[REPORT_KEY])

    IterationStats.update_from_output = update_from_output


def iteration_reports(iteration_stats: Any) -> list[dict[str, Any]]:
    """The reports `update_from_output` kept on one step's stats (none when no new request reported)."""
    return getattr(iteration_stats, ITERATION_REPORTS_ATTR, [])
