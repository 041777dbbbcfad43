"""The pruner's Prometheus series on vLLM's own `/metrics` (a `vllm.stat_logger_plugins` entry).

A stat-logger plugin that subclasses vLLM's `PrometheusStatLogger` replaces the
default one, so the pruner series are created beside vLLM's, after vLLM clears
old `vllm:` collectors, in the registry `/metrics` serves (prometheus_client's
multiprocess mode included), with vLLM's `model_name` and `engine` labels.
Each request is counted once, from the decision report on its first engine
output (`asl_vllm.engine.decisions.PruneDecision.report`), which
`asl_vllm.vllm_compat.iteration_stats` keeps on the step's `IterationStats`;
what happened while it ran (shrinks under memory pressure, preemptions
avoided) is counted from the report on its last output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from vllm.v1.metrics.loggers import PrometheusStatLogger

from asl_vllm.config import from_vllm_config
from asl_vllm.vllm_compat.iteration_stats import finished_reports, iteration_reports
from asl_vllm.vllm_compat.stat_logger import engine_label_values

KEPT_FRACTION_BUCKETS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
BUDGET_TOKENS_BUCKETS = [128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072]
SCORING_SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0]


class PrunerMetrics:
    """The pruner's metric families; `observe` counts one request's decision report."""

    def __init__(
        self,
        labelnames: list[str],
        per_engine_labelvalues: Mapping[int, list[object]],
        num_layers: int,
        server_pruner: str,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.per_engine_labelvalues = per_engine_labelvalues
        names = [*labelnames, "pruner"]
        self.requests = Counter(
            "vllm:kv_pruner_requests",
            "Requests served by a pruning server, by the pruner they ran under and whether the "
            "KV cache of at least one layer was pruned.",
            [*names, "pruned"],
            registry=registry,
        )
        self.selection_layer = Histogram(
            "vllm:kv_pruner_selection_layer",
            "Selection layer (0-based) of the requests where one was chosen.",
            names,
            buckets=[float(layer) for layer in range(num_layers)],
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "vllm:kv_pruner_prompt_tokens",
            "Prompt tokens of the requests served by a pruning server.",
            names,
            registry=registry,
        )
        self.kept_tokens = Counter(
            "vllm:kv_pruner_kept_tokens",
            "Prompt tokens whose KV the layers keep after prefill (mean over layers); "
            "divide by vllm:kv_pruner_prompt_tokens_total for the kept share.",
            names,
            registry=registry,
        )
        self.kept_fraction = Histogram(
            "vllm:kv_pruner_kept_fraction",
            "Per request: kept KV tokens (mean over layers) / prompt tokens.",
            names,
            buckets=KEPT_FRACTION_BUCKETS,
            registry=registry,
        )
        self.freed_blocks = Counter(
            "vllm:kv_pruner_freed_blocks",
            "KV cache blocks returned to the block pool after pruned prefills.",
            names,
            registry=registry,
        )
        self.scoring_seconds = Histogram(
            "vllm:kv_pruner_scoring_seconds",
            "Per scored request: seconds spent scoring and selecting tokens during its prefill.",
            names,
            buckets=SCORING_SECONDS_BUCKETS,
            registry=registry,
        )
        self.auto_requests = Counter(
            "vllm:kv_pruner_auto_budget_requests",
            "Requests whose budget was chosen from pool usage (--kv-budget auto), by whether it limited "
            "their KV (budget=limited) or kept every prompt token (budget=full).",
            [*names, "budget"],
            registry=registry,
        )
        self.auto_budget = Histogram(
            "vllm:kv_pruner_auto_budget_tokens",
            "Per auto-budget request that got a budget: the budget chosen (tokens per layer).",
            names,
            buckets=BUDGET_TOKENS_BUCKETS,
            registry=registry,
        )
        self.shrinks = Counter(
            "vllm:kv_pruner_shrinks",
            "Running requests shrunk in place instead of a preemption (each shrink once).",
            names,
            registry=registry,
        )
        self.shrink_freed_blocks = Counter(
            "vllm:kv_pruner_shrink_freed_blocks",
            "KV cache blocks returned to the block pool by shrinking running requests.",
            names,
            registry=registry,
        )
        self.preemptions_avoided = Counter(
            "vllm:kv_pruner_preemptions_avoided",
            "Times a running request got its next block from shrinking others, where vLLM would have preempted.",
            names,
            registry=registry,
        )
        # Series of the server's own pruner exist from the start, at zero.
        for engine_idx in per_engine_labelvalues:
            labels = self._labels(engine_idx, server_pruner)
            for pruned in ("true", "false"):
                self.requests.labels(*labels, pruned)
            for budget in ("full", "limited"):
                self.auto_requests.labels(*labels, budget)
            for family in (
                self.selection_layer,
                self.prompt_tokens,
                self.kept_tokens,
                self.kept_fraction,
                self.freed_blocks,
                self.scoring_seconds,
                self.auto_budget,
                self.shrinks,
                self.shrink_freed_blocks,
                self.preemptions_avoided,
            ):
                family.labels(*labels)

    def _labels(self, engine_idx: int, pruner: str) -> list[object]:
        return [*self.per_engine_labelvalues[engine_idx], pruner]

    def observe(self, report: Mapping[str, Any], engine_idx: int = 0) -> None:
        labels = self._labels(engine_idx, str(report["pruner"]))
        prompt_tokens = int(report["prompt_tokens"])
        kept_tokens = int(report["kept_tokens"])
        self.requests.labels(*labels, "true" if report["pruned"] else "false").inc()
        if report["selection_layer"] is not None:
            self.selection_layer.labels(*labels).observe(report["selection_layer"])
        self.prompt_tokens.labels(*labels).inc(prompt_tokens)
        self.kept_tokens.labels(*labels).inc(kept_tokens)
        if prompt_tokens > 0:
            self.kept_fraction.labels(*labels).observe(kept_tokens / prompt_tokens)
        self.freed_blocks.labels(*labels).inc(int(report["freed_blocks"]))
        if report["scoring_seconds"] is not None:
            self.scoring_seconds.labels(*labels).observe(report["scoring_seconds"])
        if report.get("kv_budget_auto"):
            budget = report.get("kv_budget")
            self.auto_requests.labels(*labels, "full" if budget is None else "limited").inc()
            if budget is not None:
                self.auto_budget.labels(*labels).observe(budget)

    def observe_finished(self, report: Mapping[str, Any], engine_idx: int = 0) -> None:
        """What happened to a request while it ran, from the report on its last output."""
        labels = self._labels(engine_idx, str(report["pruner"]))
        shrinks = report.get("shrinks") or []
        self.shrinks.labels(*labels).inc(len(shrinks))
        self.shrink_freed_blocks.labels(*labels).inc(sum(int(shrink["freed_blocks"]) for shrink in shrinks))
        self.preemptions_avoided.labels(*labels).inc(int(report.get("preemptions_avoided") or 0))


class PrunerPrometheusStatLogger(PrometheusStatLogger):
    """vLLM's Prometheus logger plus the pruner series (only when the server prunes)."""

    def __init__(self, vllm_config: Any, engine_indexes: list[int] | None = None) -> None:
        super().__init__(vllm_config, engine_indexes)
        config = from_vllm_config(vllm_config)
        self.pruner_metrics: PrunerMetrics | None = None
        if config.enabled:
            self.pruner_metrics = PrunerMetrics(
                ["model_name", "engine"],
                engine_label_values(self),
                vllm_config.model_config.hf_text_config.num_hidden_layers,
                config.pruner,
            )

    def record(
        self,
        scheduler_stats: Any,
        iteration_stats: Any,
        mm_cache_stats: Any = None,
        engine_idx: int = 0,
    ) -> None:
        super().record(scheduler_stats, iteration_stats, mm_cache_stats=mm_cache_stats, engine_idx=engine_idx)
        if self.pruner_metrics is None or iteration_stats is None:
            return
        for report in iteration_reports(iteration_stats):
            self.pruner_metrics.observe(report, engine_idx)
        for report in finished_reports(iteration_stats):
            self.pruner_metrics.observe_finished(report, engine_idx)
