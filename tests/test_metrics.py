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
