"""NoBudget: nothing to score, nothing kept beyond what the layers ran."""

from __future__ import annotations

from asl_vllm.engine.budget_rules import NoBudget
from tests.engine.budget_rules.requests import pruning_request, scored_layer


def test_no_budget_keeps_everything():
    request = pruning_request(100, [0, 1], pruner="asl")
    rule = request.rule
    assert isinstance(rule, NoBudget) and not rule.has_budget and rule.kept_scores is None
    assert not rule.wants_scores(request, 0)
    assert rule.after_layer(request, scored_layer(request, 0, seed=0)) is None
    assert request.decision.layer_offsets == [0, 0]
