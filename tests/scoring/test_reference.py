"""The torch scoring core against naive loops, hand-computed cases, and properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from asl_vllm.scoring.reference import (
    AdaptiveLayerRule,
    descending_ranks,
    kv_head_scores,
    pool_scores,
    rank_variance,
    select_tokens,
    snapkv_select,
    token_scores,
    window_histogram,
)


def naive_window_histogram(q_win, keys, scale):
    window, num_heads, _ = q_win.shape
    num_tokens, num_kv_heads, _ = keys.shape
    group = num_heads // num_kv_heads
    out = torch.zeros(num_heads, num_tokens - window, dtype=torch.float64)
    for head in range(num_heads):
        for row in range(window):
            position = num_tokens - window + row
            logits = [
                float(q_win[row, head].double() @ keys[j, head // group].double()) * scale for j in range(position + 1)
            ]
            top = max(logits)
            weights = [math.exp(x - top) for x in logits]
            total = sum(weights)
            for j in range(num_tokens - window):
                out[head, j] += weights[j] / total
    return out


def naive_pool(hist, kernel):
    heads, length = hist.shape
    out = torch.zeros_like(hist, dtype=torch.float64)
    for head in range(heads):
        for i in range(length):
            window = [hist[head, j] for j in range(i - kernel // 2, i + kernel // 2 + 1) if 0 <= j < length]
            out[head, i] = float(sum(window)) / kernel
    return out


@pytest.mark.parametrize(("num_heads", "num_kv_heads"), [(2, 2), (3, 1), (8, 2), (8, 1), (9, 3)])
@pytest.mark.parametrize(("num_tokens", "window"), [(5, 2), (40, 8), (33, 32), (70, 32)])
def test_window_histogram_matches_the_naive_loop(num_heads, num_kv_heads, num_tokens, window):
    generator = torch.Generator().manual_seed(num_tokens * num_heads)
    q_win = torch.randn(window, num_heads, 16, generator=generator)
    keys = torch.randn(num_tokens, num_kv_heads, 16, generator=generator)
    got = window_histogram(q_win, keys, 0.25)
    torch.testing.assert_close(got.double(), naive_window_histogram(q_win, keys, 0.25), atol=1e-5, rtol=1e-5)


def test_window_histogram_hand_computed():
    # N = 3, w = 1, one head, d = 1: the last query (position 2) sees keys 0, 1, 2 with logits 0, 1, 2.
    q_win = torch.ones(1, 1, 1)
    keys = torch.tensor([0.0, 1.0, 2.0]).view(3, 1, 1)
    total = 1 + math.e + math.e**2
    torch.testing.assert_close(window_histogram(q_win, keys, 1.0), torch.tensor([[1 / total, math.e / total]]))


def test_window_is_causal_inside_itself():
    # Row 0 of a 2-row window (position N-2) must not see the last key, however large its logit.
    q_win = torch.ones(2, 1, 1)
    keys = torch.tensor([0.0, 0.0, 0.0, 50.0]).view(4, 1, 1)
    hist = window_histogram(q_win, keys, 1.0)
    # Row 0 spreads evenly over keys 0..2; row 1 puts almost all of its mass on key 3.
    torch.testing.assert_close(hist, torch.full((1, 2), 1 / 3), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kernel", [1, 3, 7])
@pytest.mark.parametrize("length", [1, 2, 6, 50])
def test_pool_matches_the_naive_loop(kernel, length):
    hist = torch.rand(3, length, generator=torch.Generator().manual_seed(length + kernel))
    torch.testing.assert_close(pool_scores(hist, kernel).double(), naive_pool(hist, kernel))


def test_group_and_token_sums():
    pooled = torch.arange(12, dtype=torch.float32).view(6, 2)
    torch.testing.assert_close(kv_head_scores(pooled, 2), torch.tensor([[6.0, 9.0], [24.0, 27.0]]))
    torch.testing.assert_close(token_scores(pooled), torch.tensor([30.0, 36.0]))


def test_ranks_break_ties_by_index():
    assert descending_ranks(torch.tensor([0.5, 0.9, 0.5, 0.1, 0.9])).tolist() == [3, 1, 4, 5, 2]


def test_rank_variance_hand_computed():
    ranks = torch.tensor([[1, 2, 3], [2, 1, 3]])
    # top 1 -> I = {0, 1}; each has ranks (1, 2) or (2, 1): squared deviation 0.25 everywhere.
    assert rank_variance(ranks, 1) == pytest.approx(0.25)
    assert rank_variance(ranks, 0) == 0.0


def test_adaptive_rule_selects_first_layer_below_tau():
    rule = AdaptiveLayerRule(min_layer=2, obs_layers=2, tau=0.5, top=2)
    moving = [torch.tensor([1, 2, 3, 4]), torch.tensor([4, 3, 2, 1]), torch.tensor([1, 2, 3, 4])]
    assert rule.first_observed_layer == 1
    assert not rule.observe(1, moving[0])
    assert not rule.observe(2, moving[1])  # reference: ranks moving a lot
    assert not rule.observe(3, moving[2])  # still moving: relative variance 1
    assert rule.observe(4, moving[2])  # settled: variance 0 < tau
    assert rule.variances[4] == 0.0


def test_select_tokens_keeps_top_and_window_sorted():
    scores = torch.tensor([0.1, 0.9, 0.3, 0.8, 0.2, 0.7])
    assert select_tokens(scores, num_tokens=8, keep=4, window=2).tolist() == [1, 3, 6, 7]
    assert select_tokens(scores, num_tokens=8, keep=8, window=2).tolist() == list(range(8))


def test_snapkv_select_per_head():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.1, 0.9, 0.5]])
    assert snapkv_select(scores, num_tokens=4, keep=2, window=1).tolist() == [[0, 3], [1, 3]]


@settings(max_examples=200, deadline=None)
@given(
    num_tokens=st.integers(1, 300),
    window=st.integers(1, 40),
    keep=st.integers(1, 400),
    seed=st.integers(0, 2**31 - 1),
    ties=st.booleans(),
)
def test_selection_properties(num_tokens, window, keep, seed, ties):
    keep = max(keep, min(window, num_tokens))
    generator = torch.Generator().manual_seed(seed)
    past = max(num_tokens - window, 0)
    scores = (
        torch.randint(0, 3, (past,), generator=generator).float() if ties else torch.rand(past, generator=generator)
    )
    kept = select_tokens(scores, num_tokens, keep, window)
    assert len(kept) == min(keep, num_tokens)
    assert kept.tolist() == sorted(set(kept.tolist()))
    assert set(range(num_tokens - min(window, num_tokens), num_tokens)) <= set(kept.tolist())
    ranks = descending_ranks(scores)
    assert sorted(ranks.tolist()) == list(range(1, past + 1))
    chosen_past = [i for i in kept.tolist() if i < past]
    if chosen_past and len(chosen_past) < past:
        dropped = [i for i in range(past) if i not in set(chosen_past)]
        assert min(scores[chosen_past]) >= max(scores[dropped])
