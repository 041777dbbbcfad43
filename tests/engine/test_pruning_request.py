"""PruningRequest: where a selection propagates, which rows go on, and a two-pass request's re-run."""

from __future__ import annotations

import torch

from asl_vllm.scoring.reference import select_tokens
from tests.engine.budget_rules.requests import WINDOW, pruning_request, scored_layer

GROUPS = [0, 0, 0, 1, 1, 1]
# --asl-select-k 64 of 100 tokens keeps 68: the freed head [0, 32) is whole blocks of 16.
KEEP = 68


def test_without_a_budget_propagation_waits_for_the_end_of_the_selection_layers_group():
    assert pruning_request(100, GROUPS, pruner="fastkv", fixed_layer=1, select_k=64).propagation_layer(1) == 2
    budgeted = pruning_request(100, GROUPS, pruner="fastkv", fixed_layer=1, select_k=64, kv_budget=64)
    assert budgeted.propagation_layer(1) == 1


def test_a_single_pass_selection_keeps_its_rows_at_the_propagation_layer():
    request = pruning_request(100, GROUPS, pruner="fastkv", fixed_layer=1, select_k=64)
    layer = scored_layer(request, 1, seed=0)
    request.select(1, layer.scores, 0, last_layer=False)
    expected = select_tokens(layer.scores.token_scores[0, : 100 - WINDOW], 100, KEEP, WINDOW)
    assert torch.equal(request.decision.selected_indices, expected)
    assert request.decision.selection_layer == 1 and request.decision.selected_tokens == KEEP
    assert request.propagate(1) is None and request.count == 100
    assert torch.equal(request.propagate(2), expected)
    assert torch.equal(request.rows, expected) and request.kv_offset == 32
    assert torch.equal(request.slot_rows, torch.arange(32, 100))


def test_a_two_pass_selection_re_runs_the_selected_tokens_from_fresh_positions():
    request = pruning_request(100, GROUPS, pruner="gemfilter", fixed_layer=1, select_k=64)
    layer = scored_layer(request, 1, seed=1)
    request.select(1, layer.scores, 0, last_layer=False)
    assert request.pending is None and request.rerun_rows is not None
    rerun = request.for_rerun()
    assert torch.equal(rerun.rows, request.decision.selected_indices)
    assert torch.equal(rerun.positions, torch.arange(KEEP)) and rerun.kv_offset == 32
    assert request.decision.position_offset == 32
    assert not any(rerun.wants_selection(layer) for layer in range(len(GROUPS)))
