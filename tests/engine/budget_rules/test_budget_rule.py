"""`budget_rule`: which rule a prefill's plan gets."""

from __future__ import annotations

import pytest

from asl_vllm.engine.budget_rules import LayerShared, NoBudget, PerLayer
from tests.engine.budget_rules.requests import auto_budget_request, pruning_request


@pytest.mark.parametrize(
    ("settings", "rule_class", "per_kv_head"),
    [
        ({"pruner": "asl"}, NoBudget, False),
        ({"pruner": "asl", "kv_budget": 64}, LayerShared, False),
        ({"pruner": "asl", "kv_budget": 64, "budget_layers": "per-layer"}, PerLayer, False),
        ({"pruner": "snapkv", "kv_budget": 64, "budget_heads": "per-kv-head"}, LayerShared, True),
        (
            {"pruner": "snapkv", "kv_budget": 64, "budget_heads": "per-kv-head", "budget_layers": "per-layer"},
            PerLayer,
            True,
        ),
        ({"pruner": "pyramidkv", "kv_budget": 64}, PerLayer, False),
    ],
)
def test_the_plan_picks_the_rule(settings, rule_class, per_kv_head):
    rule = pruning_request(100, [0, 1], **settings).rule
    assert type(rule) is rule_class and rule.per_kv_head == per_kv_head and rule.kept_scores is None


def test_a_prompt_within_a_layer_shared_budget_keeps_everything_but_propagates_at_once():
    rule = pruning_request(60, [0, 1], pruner="snapkv", kv_budget=64).rule
    assert isinstance(rule, PerLayer) and rule.has_budget
    assert not any(
        rule.wants_scores(pruning_request(60, [0, 1], pruner="snapkv", kv_budget=64), layer) for layer in (0, 1)
    )


@pytest.mark.parametrize(("layers", "rule_class"), [(None, LayerShared), ("per-layer", PerLayer)])
def test_an_auto_budget_keeps_scores_even_when_given_none(layers, rule_class):
    rule = auto_budget_request(100, [0, 1], None, pruner="asl", budget_layers=layers).rule
    assert type(rule) is rule_class and rule.kept_scores == [None, None] and not rule.has_budget
