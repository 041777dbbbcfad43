"""The pruner's Prometheus series count decision reports."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from asl_vllm.engine.decisions import PruneDecision
from asl_vllm.metrics import PrunerMetrics

LABELS = {"model_name": "m", "engine": "0"}
PRUNED = PruneDecision(
    req_id="r1",
    pruner="asl",
    num_prompt_tokens=2500,
    selection_layer=17,
    layer_offsets=[1408] * 30,
    scoring_seconds=0.02,
    freed_blocks=11,
).report()
UNSCORED = PruneDecision(req_id="r2", pruner="none", num_prompt_tokens=40).report()


@pytest.fixture
def metrics():
    registry = CollectorRegistry()
    return PrunerMetrics(list(LABELS), {0: list(LABELS.values())}, 30, "asl", registry=registry), registry


def value(registry, name, **labels):
    return registry.get_sample_value(name, {**LABELS, **labels})


def test_server_pruner_series_exist_at_zero(metrics):
    _, registry = metrics
    assert value(registry, "vllm:kv_pruner_requests_total", pruner="asl", pruned="true") == 0
    assert value(registry, "vllm:kv_pruner_requests_total", pruner="asl", pruned="false") == 0
    assert value(registry, "vllm:kv_pruner_freed_blocks_total", pruner="asl") == 0
    assert value(registry, "vllm:kv_pruner_selection_layer_count", pruner="asl") == 0
    assert value(registry, "vllm:kv_pruner_scoring_seconds_count", pruner="asl") == 0


def test_a_pruned_report_moves_every_series(metrics):
    pruner_metrics, registry = metrics
    pruner_metrics.observe(PRUNED)
    asl = {"pruner": "asl"}
    assert value(registry, "vllm:kv_pruner_requests_total", pruned="true", **asl) == 1
    assert value(registry, "vllm:kv_pruner_requests_total", pruned="false", **asl) == 0
    assert value(registry, "vllm:kv_pruner_selection_layer_bucket", le="16.0", **asl) == 0
    assert value(registry, "vllm:kv_pruner_selection_layer_bucket", le="17.0", **asl) == 1
    assert value(registry, "vllm:kv_pruner_selection_layer_sum", **asl) == 17
    assert value(registry, "vllm:kv_pruner_prompt_tokens_total", **asl) == 2500
    assert value(registry, "vllm:kv_pruner_kept_tokens_total", **asl) == 1092
    assert value(registry, "vllm:kv_pruner_kept_fraction_bucket", le="0.4", **asl) == 0
    assert value(registry, "vllm:kv_pruner_kept_fraction_bucket", le="0.5", **asl) == 1
    assert value(registry, "vllm:kv_pruner_freed_blocks_total", **asl) == 11
    assert value(registry, "vllm:kv_pruner_scoring_seconds_sum", **asl) == pytest.approx(0.02)
    assert value(registry, "vllm:kv_pruner_scoring_seconds_count", **asl) == 1


def test_an_unscored_report_counts_as_not_pruned_under_its_own_pruner(metrics):
    pruner_metrics, registry = metrics
    pruner_metrics.observe(UNSCORED)
    none = {"pruner": "none"}
    assert value(registry, "vllm:kv_pruner_requests_total", pruned="false", **none) == 1
    assert value(registry, "vllm:kv_pruner_kept_fraction_bucket", le="0.9", **none) == 0
    assert value(registry, "vllm:kv_pruner_kept_fraction_count", **none) == 1
    # Not observed: no selection layer, no scoring.
    assert not value(registry, "vllm:kv_pruner_selection_layer_count", **none)
    assert not value(registry, "vllm:kv_pruner_scoring_seconds_count", **none)
    assert value(registry, "vllm:kv_pruner_requests_total", pruned="false", pruner="asl") == 0


def test_auto_budget_requests_are_counted_by_whether_their_budget_limited_them(metrics):
    pruner_metrics, registry = metrics
    full = PruneDecision(req_id="r3", pruner="asl", num_prompt_tokens=900, layer_offsets=[0] * 30, budget_auto=True)
    limited = PruneDecision(
        req_id="r4", pruner="asl", num_prompt_tokens=6000, layer_offsets=[4864] * 30, kv_budget=1100, budget_auto=True
    )
    for report in (full.report(), limited.report(), PRUNED):
        pruner_metrics.observe(report)
    asl = {"pruner": "asl"}
    assert value(registry, "vllm:kv_pruner_auto_budget_requests_total", budget="full", **asl) == 1
    assert value(registry, "vllm:kv_pruner_auto_budget_requests_total", budget="limited", **asl) == 1
    assert value(registry, "vllm:kv_pruner_auto_budget_tokens_bucket", le="1024.0", **asl) == 0
    assert value(registry, "vllm:kv_pruner_auto_budget_tokens_bucket", le="2048.0", **asl) == 1


def test_shrinks_and_avoided_preemptions_are_counted_from_the_last_report(metrics):
    pruner_metrics, registry = metrics
    shrunk = {
        **PRUNED,
        "shrinks": [{"kept_tokens": 3056, "freed_blocks": 23}, {"kept_tokens": 1648, "freed_blocks": 11}],
    }
    rescued = {**PRUNED, "preemptions_avoided": 2}
    for report in (shrunk, rescued, PRUNED):
        pruner_metrics.observe_finished(report)
    asl = {"pruner": "asl"}
    assert value(registry, "vllm:kv_pruner_shrinks_total", **asl) == 2
    assert value(registry, "vllm:kv_pruner_shrink_freed_blocks_total", **asl) == 34
    assert value(registry, "vllm:kv_pruner_preemptions_avoided_total", **asl) == 2
    assert value(registry, "vllm:kv_pruner_requests_total", pruned="true", **asl) == 0  # counted at the first report
