"""PerLayer: each layer keeps its own best tokens right away, as `budget_select` ranks them."""

from __future__ import annotations

import pytest
import torch

from asl_vllm.budget import kept_tokens
from asl_vllm.engine.budget_rules import PerLayer
from asl_vllm.engine.shrinking import kept_past_scores
from asl_vllm.pruners.pyramidkv import pyramid_keeps
from asl_vllm.scoring.reference import budget_select
from tests.engine.budget_rules.requests import (
    BLOCK_SIZE,
    FIRST_SLOT,
    NUM_KV_HEADS,
    WINDOW,
    auto_budget_request,
    pruning_request,
    scored_layer,
)

NUM_TOKENS = 100


def _check_write(write, layer, kept: torch.Tensor, keep: int) -> None:
    """Slot N - keep + j holds, per KV head g, that head's j-th kept token."""
    assert kept.shape == (NUM_KV_HEADS, keep)
    for head in range(NUM_KV_HEADS):
        assert torch.equal(write.keys[:, head], layer.keys[kept[head], head])
        assert torch.equal(write.values[:, head], layer.values[kept[head], head])
    assert torch.equal(write.slots, torch.arange(FIRST_SLOT + NUM_TOKENS - keep, FIRST_SLOT + NUM_TOKENS))


@pytest.mark.parametrize("heads", ["shared", "per-kv-head"])
def test_every_layer_keeps_its_best_tokens_in_its_tail(heads):
    request = pruning_request(
        NUM_TOKENS, [0, 0, 0], pruner="snapkv", kv_budget=64, budget_layers="per-layer", budget_heads=heads
    )
    rule = request.rule
    keep = kept_tokens(NUM_TOKENS, 64, BLOCK_SIZE)
    assert isinstance(rule, PerLayer) and rule.keeps == [keep] * 3 and rule.has_budget
    assert rule.kept_scores is None
    for index in range(3):
        assert rule.wants_scores(request, index)
        layer = scored_layer(request, index, seed=index)
        write = rule.after_layer(request, layer)
        ranked = layer.scores.budget_scores(0, shared=heads == "shared")
        assert ranked.dim() == (1 if heads == "shared" else 2)
        _check_write(write, layer, budget_select(ranked, NUM_TOKENS, keep, WINDOW, NUM_KV_HEADS), keep)
        assert request.decision.layer_offsets[index] == NUM_TOKENS - keep
    if heads == "per-kv-head":
        assert not torch.equal(write.keys[:, 0], write.keys[:, 1])  # each head its own tokens (random scores)


def test_pyramid_keeps_fall_by_layer_group():
    layer_groups = [0, 0, 1, 1, 2, 2]
    request = pruning_request(NUM_TOKENS, layer_groups, pruner="pyramidkv", kv_budget=64)
    rule = request.rule
    group_keeps = pyramid_keeps(NUM_TOKENS, 64, BLOCK_SIZE, 3, WINDOW)
    assert isinstance(rule, PerLayer) and rule.keeps == [group_keeps[group] for group in layer_groups]
    for index in range(6):
        keep = rule.keeps[index]
        if keep >= NUM_TOKENS:
            assert not rule.wants_scores(request, index)
            continue
        layer = scored_layer(request, index, seed=index)
        kept = budget_select(layer.scores.budget_scores(0, shared=True), NUM_TOKENS, keep, WINDOW, NUM_KV_HEADS)
        _check_write(rule.after_layer(request, layer), layer, kept, keep)
        assert request.decision.layer_offsets[index] == NUM_TOKENS - keep


def test_an_auto_budget_keeps_the_kept_tokens_scores():
    request = auto_budget_request(NUM_TOKENS, [0, 0], 64, pruner="asl", budget_layers="per-layer")
    rule = request.rule
    keep = kept_tokens(NUM_TOKENS, 64, BLOCK_SIZE)
    layer = scored_layer(request, 0, seed=3)
    rule.after_layer(request, layer)
    ranked = layer.scores.budget_scores(0, shared=True)
    kept = budget_select(ranked, NUM_TOKENS, keep, WINDOW, NUM_KV_HEADS)
    assert torch.equal(rule.kept_scores[0], kept_past_scores(ranked, kept, keep, WINDOW))
    assert rule.kept_scores[0].shape == (1, keep - WINDOW)
    rule.restart()
    assert rule.kept_scores == [None, None]


def test_an_auto_budget_given_none_keeps_every_token_and_its_scores():
    request = auto_budget_request(NUM_TOKENS, [0, 0], None, pruner="asl", budget_layers="per-layer")
    rule = request.rule
    assert isinstance(rule, PerLayer) and rule.keeps is None and not rule.has_budget
    assert rule.wants_scores(request, 0)
    layer = scored_layer(request, 0, seed=4)
    assert rule.after_layer(request, layer) is None
    assert torch.equal(rule.kept_scores[0], layer.scores.budget_scores(0, shared=True).view(1, -1))
    assert request.decision.layer_offsets == [0, 0]
