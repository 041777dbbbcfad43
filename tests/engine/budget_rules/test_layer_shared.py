"""LayerShared: one kept set for every layer, ranked by the layers' summed shares (`layer_shared_scores`)."""

from __future__ import annotations

import pytest
import torch

from asl_vllm.budget import kept_tokens
from asl_vllm.engine.budget_rules import LayerShared
from asl_vllm.engine.shrinking import kept_past_scores
from asl_vllm.scoring.reference import budget_select, layer_shared_scores, layer_shares, select_tokens
from tests.engine.budget_rules.requests import (
    BLOCK_SIZE,
    NUM_KV_HEADS,
    WINDOW,
    auto_budget_request,
    pruning_request,
    scored_layer,
)

NUM_TOKENS = 100


class RecordedCache:
    """Records the compactions an `after_loop` asks of the step's KV caches."""

    num_kv_heads = NUM_KV_HEADS

    def __init__(self) -> None:
        self.moves: dict[int, torch.Tensor] = {}

    def compact_tail(self, layer: int, table_row: int, slots: torch.Tensor, num_tokens: int) -> None:
        assert table_row == 0 and num_tokens == NUM_TOKENS
        self.moves[layer] = slots


@pytest.mark.parametrize("heads", ["shared", "per-kv-head"])
def test_every_layer_keeps_the_best_tokens_by_the_summed_shares(heads):
    request = pruning_request(NUM_TOKENS, [0, 0, 0], pruner="snapkv", kv_budget=64, budget_heads=heads)
    rule = request.rule
    keep = kept_tokens(NUM_TOKENS, 64, BLOCK_SIZE)
    assert isinstance(rule, LayerShared) and rule.keep == keep and rule.budgeted and rule.has_budget
    per_layer = []
    for index in range(3):
        assert rule.wants_scores(request, index)
        layer = scored_layer(request, index, seed=index)
        assert rule.after_layer(request, layer) is None  # nothing is kept before the last layer has run
        per_layer.append(layer.scores.budget_scores(0, shared=heads == "shared"))
    assert request.decision.layer_offsets == [0, 0, 0]
    cache = RecordedCache()
    rule.after_loop(request, cache)
    kept = budget_select(layer_shared_scores(per_layer), NUM_TOKENS, keep, WINDOW, NUM_KV_HEADS)
    assert sorted(cache.moves) == [0, 1, 2]
    for slots in cache.moves.values():
        assert torch.equal(slots, kept)  # the layers wrote slot i for prompt token i
    assert request.decision.layer_offsets == [NUM_TOKENS - keep] * 3


def test_after_a_selection_the_set_is_chosen_among_the_selected_tokens():
    request = auto_budget_request(NUM_TOKENS, [0, 1], 64, pruner="asl")
    rule = request.rule
    keep = kept_tokens(NUM_TOKENS, 64, BLOCK_SIZE)
    first = scored_layer(request, 0, seed=0)
    rule.after_layer(request, first)
    # Layer 0 selects 80 tokens; layer 1 runs only them, its KV in the tail slots [20, 100).
    selected = select_tokens(first.scores.token_scores[0, :68], NUM_TOKENS, 80, WINDOW)
    request.keep(selected, selected)  # one step: row i is prompt token i
    second = scored_layer(request, 1, seed=1)
    rule.after_layer(request, second)
    cache = RecordedCache()
    rule.after_loop(request, cache)

    # Layer 0's shares are of all its 68 past tokens; the set is ranked among the 48 selected ones.
    past = selected[: 80 - WINDOW]
    summed = layer_shares(first.scores.token_scores[0, :68])[past] + layer_shares(second.scores.token_scores[0, :48])
    kept = budget_select(summed, 80, keep, WINDOW, NUM_KV_HEADS)
    kept_prompt = selected[kept]
    assert torch.equal(cache.moves[0], kept_prompt)
    assert torch.equal(cache.moves[1], 20 + torch.searchsorted(selected, kept_prompt))
    assert request.decision.layer_offsets == [NUM_TOKENS - keep] * 2
    expected = kept_past_scores(summed, kept, keep, WINDOW)
    assert all(torch.equal(scores, expected) for scores in rule.kept_scores)


def test_an_auto_budget_given_none_keeps_every_token_and_each_layers_summed_shares():
    request = auto_budget_request(NUM_TOKENS, [0, 0], None, pruner="asl")
    rule = request.rule
    assert isinstance(rule, LayerShared) and not rule.budgeted and not rule.has_budget
    per_layer = []
    for index in range(2):
        layer = scored_layer(request, index, seed=index)
        rule.after_layer(request, layer)
        per_layer.append(layer.scores.token_scores[0, : NUM_TOKENS - WINDOW])
    cache = RecordedCache()
    rule.after_loop(request, cache)
    assert not cache.moves
    summed = layer_shared_scores(per_layer).view(1, -1)
    assert all(torch.equal(scores, summed) for scores in rule.kept_scores)
    rule.restart()
    assert rule.layer_scores is None and not rule.layer_rows and rule.kept_scores == [None, None]
