"""The torch scoring core against naive loops, hand-computed cases, and properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from asl_vllm.scoring import reference as ref

from . import naive

# (H, G): GQA ratios 1, 3, 4, 8 (and SmolLM2's 9/3).
HEAD_LAYOUTS = [(2, 2), (3, 1), (8, 2), (8, 1), (9, 3)]


def _as_double(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _assert_matches(got: torch.Tensor, naive_values) -> None:
    """fp32 sums against fp64 loops: a few ulps of fp32 per accumulated term."""
    torch.testing.assert_close(got.double(), _as_double(naive_values).view(got.shape), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("num_heads", "num_kv_heads"), HEAD_LAYOUTS)
@pytest.mark.parametrize(("num_tokens", "window"), [(1, 1), (4, 2), (5, 5), (33, 32), (70, 32), (129, 32)])
def test_window_histogram_matches_the_naive_loop(num_heads, num_kv_heads, num_tokens, window):
    generator = torch.Generator().manual_seed(num_tokens * num_heads + window)
    q_win = torch.randn(window, num_heads, 8, generator=generator)
    keys = torch.randn(num_tokens, num_kv_heads, 8, generator=generator)
    got = ref.window_histogram(q_win, keys, 0.3)
    assert got.dtype == torch.float32 and got.shape == (num_heads, num_tokens - window)
    _assert_matches(got, naive.window_histogram(q_win, keys, 0.3))


def test_window_histogram_long_prompt_matches_the_naive_loop():
    generator = torch.Generator().manual_seed(5)
    q_win = torch.randn(3, 8, 4, generator=generator)
    keys = torch.randn(3000, 1, 4, generator=generator)
    got = ref.window_histogram(q_win, keys, 0.5)
    _assert_matches(got, naive.window_histogram(q_win, keys, 0.5))


def test_window_histogram_hand_computed():
    # N = 4, w = 2, d = 1, scale 1, q = 1, keys ln 1 .. ln 4: exp(logits) are 1, 2, 3, 4.
    # Row 0 (position 2) sees weights 1, 2, 3 / 6; row 1 (position 3) sees 1, 2, 3, 4 / 10.
    q_win = torch.ones(2, 1, 1)
    keys = torch.log(torch.tensor([1.0, 2.0, 3.0, 4.0])).view(4, 1, 1)
    expected = torch.tensor([[1 / 6 + 1 / 10, 2 / 6 + 2 / 10]])
    torch.testing.assert_close(ref.window_histogram(q_win, keys, 1.0), expected)


def test_window_is_causal_inside_itself():
    # Row 0 of a 2-row window (position N-2) must not see the last key, however large its logit.
    q_win = torch.ones(2, 1, 1)
    keys = torch.tensor([0.0, 0.0, 0.0, 50.0]).view(4, 1, 1)
    hist = ref.window_histogram(q_win, keys, 1.0)
    # Row 0 spreads evenly over keys 0..2; row 1 puts almost all of its mass on key 3.
    torch.testing.assert_close(hist, torch.full((1, 2), 1 / 3), atol=1e-6, rtol=0)


def test_window_histogram_uses_each_query_heads_own_kv_head():
    # Two KV heads: head 0's keys favour token 0, head 1's favour token 1; 4 query heads, ratio 2.
    keys = torch.tensor([[[5.0], [0.0]], [[0.0], [5.0]], [[0.0], [0.0]]])  # [N=3, G=2, d=1]
    hist = ref.window_histogram(torch.ones(1, 4, 1), keys, 1.0)
    assert hist[:2, 0].min() > 0.9 and hist[2:, 1].min() > 0.9


def test_window_histogram_upcasts_half_precision():
    generator = torch.Generator().manual_seed(2)
    q_win = torch.randn(4, 4, 64, generator=generator).bfloat16()
    keys = torch.randn(40, 2, 64, generator=generator).bfloat16()
    got = ref.window_histogram(q_win, keys, 0.125)
    torch.testing.assert_close(got, ref.window_histogram(q_win.float(), keys.float(), 0.125))


def test_window_histogram_empty_past_and_bad_shapes():
    assert ref.window_histogram(torch.randn(6, 4, 8), torch.randn(6, 2, 8), 1.0).shape == (4, 0)
    with pytest.raises(ValueError, match="window"):
        ref.window_histogram(torch.randn(7, 4, 8), torch.randn(6, 2, 8), 1.0)
    with pytest.raises(ValueError, match="groups"):
        ref.window_histogram(torch.randn(2, 4, 8), torch.randn(6, 3, 8), 1.0)


@pytest.mark.parametrize("kernel", [1, 3, 7])
@pytest.mark.parametrize("length", [1, 2, 3, 6, 50])
def test_pool_matches_the_naive_loop(kernel, length):
    hist = torch.rand(3, length, generator=torch.Generator().manual_seed(length + kernel))
    _assert_matches(ref.pool_scores(hist, kernel), naive.pool(hist.tolist(), kernel))


def test_pool_counts_padding_as_zeros():
    # count_include_pad=True: the first token's mean over (pad, 3, 0) is 1, not 1.5.
    torch.testing.assert_close(ref.pool_scores(torch.tensor([[3.0, 0.0, 0.0]]), 3), torch.tensor([[1.0, 1.0, 0.0]]))
    assert ref.pool_scores(torch.zeros(2, 0), 7).shape == (2, 0)
    with pytest.raises(ValueError, match="odd"):
        ref.pool_scores(torch.zeros(1, 5), 4)


@pytest.mark.parametrize(("num_heads", "num_kv_heads"), HEAD_LAYOUTS)
def test_group_and_token_sums_match_the_naive_loop(num_heads, num_kv_heads):
    pooled = torch.rand(num_heads, 17, generator=torch.Generator().manual_seed(num_heads))
    _assert_matches(ref.kv_head_scores(pooled, num_kv_heads), naive.kv_head_scores(pooled.tolist(), num_kv_heads))
    _assert_matches(ref.token_scores(pooled), naive.token_scores(pooled.tolist()))


def test_group_and_token_sums_hand_computed():
    pooled = torch.arange(12, dtype=torch.float32).view(6, 2)
    torch.testing.assert_close(ref.kv_head_scores(pooled, 2), torch.tensor([[6.0, 9.0], [24.0, 27.0]]))
    torch.testing.assert_close(ref.token_scores(pooled), torch.tensor([30.0, 36.0]))


def test_ranks_break_ties_by_index():
    assert ref.descending_ranks(torch.tensor([0.5, 0.9, 0.5, 0.1, 0.9])).tolist() == [3, 1, 4, 5, 2]
    assert ref.descending_ranks(torch.zeros(4)).tolist() == [1, 2, 3, 4]
    assert ref.descending_ranks(torch.zeros(0)).tolist() == []


@pytest.mark.parametrize("levels", [2, 5, 0])
@pytest.mark.parametrize("length", [1, 7, 300])
def test_ranks_match_the_naive_count(levels, length):
    generator = torch.Generator().manual_seed(length + levels)
    scores = torch.rand(length, generator=generator)
    if levels:  # heavy ties
        scores = (scores * levels).floor()
    assert ref.descending_ranks(scores).tolist() == naive.ranks(scores.tolist())


def test_rank_variance_hand_computed():
    ranks = torch.tensor([[1, 2, 3], [2, 1, 3]])
    # top 1 -> I = {0, 1}; each has ranks (1, 2) or (2, 1): squared deviation 0.25 everywhere.
    assert ref.rank_variance(ranks, 1) == pytest.approx(0.25)
    # top >= M: I is every token; token 2 never moves -> (0.25 * 4 + 0) / 6.
    assert ref.rank_variance(ranks, 3) == pytest.approx(1 / 6)
    assert ref.rank_variance(ranks, 99) == pytest.approx(1 / 6)
    assert ref.rank_variance(ranks, 0) == 0.0
    assert ref.rank_variance(ranks[:1], 2) == 0.0
    assert ref.rank_variance(torch.zeros(3, 0, dtype=torch.long), 5) == 0.0


@pytest.mark.parametrize("layers", [1, 2, 8])
@pytest.mark.parametrize("top", [0, 1, 10, 64, 100])
def test_rank_variance_matches_the_naive_loop(layers, top):
    generator = torch.Generator().manual_seed(layers * 100 + top)
    ranks = torch.stack([torch.randperm(64, generator=generator) + 1 for _ in range(layers)])
    assert ref.rank_variance(ranks, top) == pytest.approx(naive.rank_variance(ranks.tolist(), top), rel=1e-12)


def _settling_ranks(num_layers: int, length: int, seed: int) -> list[torch.Tensor]:
    """Per-layer ranks of scores whose noise shrinks with depth, so the ranking settles."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.rand(length, generator=generator)
    return [
        ref.descending_ranks(base + torch.rand(length, generator=generator) * 2.0 ** (-layer))
        for layer in range(num_layers)
    ]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("min_layer", "obs_layers", "tau"), [(3, 4, 0.3), (7, 8, 0.5), (1, 2, 0.9), (2, 1, 0.3)])
def test_adaptive_rule_matches_the_naive_search(seed, min_layer, obs_layers, tau):
    ranks = _settling_ranks(16, 50, seed)
    rule = ref.AdaptiveLayerRule(min_layer=min_layer, obs_layers=obs_layers, tau=tau, top=12)
    chosen = None
    for layer in range(rule.first_observed_layer, len(ranks)):
        if rule.observe(layer, ranks[layer]):
            chosen = layer
            break
    expected = naive.selection_layer([r.tolist() for r in ranks], min_layer, obs_layers, tau, 12)
    assert chosen == expected
    assert rule.selected_layer == expected
    assert chosen is None or chosen > min_layer


def test_adaptive_rule_selects_first_layer_below_tau():
    rule = ref.AdaptiveLayerRule(min_layer=2, obs_layers=2, tau=0.5, top=2)
    moving = [torch.tensor([1, 2, 3, 4]), torch.tensor([4, 3, 2, 1]), torch.tensor([1, 2, 3, 4])]
    assert rule.first_observed_layer == 1
    assert not rule.observe(1, moving[0])
    assert not rule.observe(2, moving[1])  # reference: I = all four tokens, v = (4 * 2.25 + 4 * 0.25) / 8
    assert not rule.observe(3, moving[2])  # still moving: relative variance 1
    assert rule.observe(4, moving[2])  # settled: variance 0 < tau
    assert rule.variances == {2: 1.25, 3: 1.25, 4: 0.0}
    with pytest.raises(RuntimeError):
        rule.observe(5, moving[2])


def test_adaptive_rule_zero_reference_selects_next_layer():
    rule = ref.AdaptiveLayerRule(min_layer=1, obs_layers=2, tau=0.3, top=2)
    same = torch.tensor([2, 1, 3])
    assert not rule.observe(0, same)
    assert not rule.observe(1, same)
    assert rule.reference == 0.0
    assert rule.observe(2, torch.tensor([3, 2, 1]))


def test_adaptive_rule_never_selects_min_layer_and_checks_order():
    rule = ref.AdaptiveLayerRule(min_layer=0, obs_layers=1, tau=1.0, top=5)
    assert not rule.observe(0, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="consecutive"):
        rule.observe(2, torch.tensor([1, 2]))
    with pytest.raises(ValueError):
        ref.AdaptiveLayerRule(min_layer=3, obs_layers=5, tau=0.3, top=5)


def test_select_tokens_keeps_top_and_window_sorted():
    scores = torch.tensor([0.1, 0.9, 0.3, 0.8, 0.2, 0.7])
    assert ref.select_tokens(scores, num_tokens=8, keep=4, window=2).tolist() == [1, 3, 6, 7]
    assert ref.select_tokens(scores, num_tokens=8, keep=8, window=2).tolist() == list(range(8))
    assert ref.select_tokens(scores, num_tokens=8, keep=2, window=2).tolist() == [6, 7]
    assert ref.select_tokens(torch.zeros(0), num_tokens=3, keep=3, window=32).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="window"):
        ref.select_tokens(scores, num_tokens=8, keep=1, window=2)
    with pytest.raises(ValueError, match="N - w"):
        ref.select_tokens(scores, num_tokens=9, keep=4, window=2)


def test_select_tokens_ties_keep_lower_indices():
    assert ref.select_tokens(torch.tensor([1.0, 2.0, 2.0, 2.0, 1.0]), 6, 3, 1).tolist() == [1, 2, 5]


@pytest.mark.parametrize("num_tokens", [1, 31, 32, 33, 100, 2500])
@pytest.mark.parametrize("keep", [32, 40, 2048])
def test_select_tokens_matches_the_naive_sort(num_tokens, keep):
    generator = torch.Generator().manual_seed(num_tokens + keep)
    past = max(num_tokens - 32, 0)
    scores = (torch.rand(past, generator=generator) * 10).floor()
    assert ref.select_tokens(scores, num_tokens, keep, 32).tolist() == naive.select_tokens(
        scores.tolist(), num_tokens, keep, 32
    )


def test_snapkv_select_per_head():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.1, 0.9, 0.5]])
    assert ref.snapkv_select(scores, num_tokens=4, keep=2, window=1).tolist() == [[0, 3], [1, 3]]
    assert ref.snapkv_select(scores, num_tokens=4, keep=9, window=1).tolist() == [[0, 1, 2, 3]] * 2
    generator = torch.Generator().manual_seed(1)
    many = torch.rand(8, 300, generator=generator)
    got = ref.snapkv_select(many, 316, 100, 16)
    assert got.shape == (8, 100)
    assert got.tolist() == [naive.select_tokens(row.tolist(), 316, 100, 16) for row in many]


def test_gemfilter_hand_computed():
    # One head, d = 1, q = 1: raw inner products are the keys 0, 6, 3, 9; pool 3 then drop the window (w = 1).
    keys = torch.tensor([0.0, 6.0, 3.0, 9.0]).view(4, 1, 1)
    got = ref.gemfilter_scores(torch.ones(1, 1), keys, window=1, kernel=3)
    torch.testing.assert_close(got, torch.tensor([2.0, 3.0, 6.0]))


@pytest.mark.parametrize(("num_heads", "num_kv_heads"), HEAD_LAYOUTS)
@pytest.mark.parametrize(("num_tokens", "window"), [(1, 32), (40, 32), (200, 8)])
def test_gemfilter_matches_the_naive_loop(num_heads, num_kv_heads, num_tokens, window):
    generator = torch.Generator().manual_seed(num_heads + num_tokens)
    q_last = torch.randn(num_heads, 8, generator=generator)
    keys = torch.randn(num_tokens, num_kv_heads, 8, generator=generator)
    got = ref.gemfilter_scores(q_last, keys, window)
    expected = naive.gemfilter_scores(q_last, keys, window, ref.GEMFILTER_KERNEL)
    torch.testing.assert_close(got.double(), _as_double(expected), atol=1e-4, rtol=1e-5)  # raw sums of 8 heads


def test_pipeline_finds_a_planted_needle():
    # Token 123's key points where every window query looks; pooling spreads its mass over its 7 neighbours,
    # which become the top 7 tokens (GemFilter's pool of 5: the top 5), and every pruner keeps it.
    generator = torch.Generator().manual_seed(0)
    num_tokens, window, num_heads, num_kv_heads, dim = 400, 32, 8, 2, 16
    direction = torch.randn(dim, generator=generator)
    keys = torch.randn(num_tokens, num_kv_heads, dim, generator=generator) * 0.1
    keys[123] = direction * 2
    q_win = direction.expand(window, num_heads, dim) + torch.randn(window, num_heads, dim, generator=generator) * 0.1
    pooled = ref.pool_scores(ref.window_histogram(q_win, keys, dim**-0.5), 7)
    ranks = ref.descending_ranks(ref.token_scores(pooled))
    assert set(torch.nonzero(ranks <= 7).flatten().tolist()) == set(range(120, 127))
    assert 123 in ref.select_tokens(ref.token_scores(pooled), num_tokens, 40, window).tolist()
    per_head = ref.snapkv_select(ref.kv_head_scores(pooled, num_kv_heads), num_tokens, 40, window)
    assert all(123 in row for row in per_head.tolist())
    gem_ranks = ref.descending_ranks(ref.gemfilter_scores(q_win[-1], keys, window))
    assert set(torch.nonzero(gem_ranks <= 5).flatten().tolist()) == set(range(121, 126))


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
    kept = ref.select_tokens(scores, num_tokens, keep, window)
    assert len(kept) == min(keep, num_tokens)
    assert kept.tolist() == sorted(set(kept.tolist()))
    assert set(range(num_tokens - min(window, num_tokens), num_tokens)) <= set(kept.tolist())
    ranks = ref.descending_ranks(scores)
    assert sorted(ranks.tolist()) == list(range(1, past + 1))
    chosen_past = [i for i in kept.tolist() if i < past]
    if chosen_past and len(chosen_past) < past:
        dropped = [i for i in range(past) if i not in set(chosen_past)]
        assert min(scores[chosen_past]) >= max(scores[dropped])
        # Ties at the boundary go to the lower index.
        boundary = float(min(scores[chosen_past]))
        assert max(i for i in chosen_past if scores[i] == boundary) < min(
            (i for i in dropped if scores[i] == boundary), default=past
        )


@settings(max_examples=100, deadline=None)
@given(
    layers=st.integers(1, 8),
    length=st.integers(0, 60),
    top=st.one_of(st.integers(-1, 70), st.integers(-(2**70), 2**70)),
    seed=st.integers(0, 2**31 - 1),
)
def test_rank_variance_properties(layers, length, top, seed):
    generator = torch.Generator().manual_seed(seed)
    ranks = torch.stack([torch.randperm(length, generator=generator) + 1 for _ in range(layers)])
    value = ref.rank_variance(ranks, top)
    assert value >= 0.0
    assert value == pytest.approx(naive.rank_variance(ranks.tolist(), top) if length else 0.0, abs=1e-9)
    # Identical layers never vary; the variance of a permutation is at most ((M - 1) / 2)^2.
    assert ref.rank_variance(ranks[:1].expand(layers, -1), top) == 0.0
    assert value <= ((length - 1) / 2) ** 2 + 1e-9 if length else value == 0.0
    # Any top at or beyond M selects every token, however large (no int64 overflow).
    assert ref.rank_variance(ranks, max(top, length)) == ref.rank_variance(ranks, length)


@settings(max_examples=100, deadline=None)
@given(length=st.integers(0, 200), kernel=st.sampled_from([1, 3, 5, 7, 9]), seed=st.integers(0, 2**31 - 1))
def test_pool_properties(length, kernel, seed):
    hist = torch.rand(2, length, generator=torch.Generator().manual_seed(seed))
    pooled = ref.pool_scores(hist, kernel)
    assert pooled.shape == hist.shape
    # Pooling with zero padding preserves nothing more than the total mass.
    assert float(pooled.sum()) <= float(hist.sum()) + 1e-4
    if length >= kernel:
        assert math.isclose(
            float(pooled[:, kernel // 2 : length - kernel // 2].sum() * kernel),
            float(sum(hist[:, i : i + kernel].sum() for i in range(length - kernel + 1))),
            rel_tol=1e-4,
        )


# Any float a score tensor can hold, NaN and infinities included: selection must still be well formed.
ANY_SCORE = st.floats(allow_nan=True, allow_infinity=True, width=32)


def _assert_well_formed_selection(kept: torch.Tensor, num_tokens: int, keep: int, window: int) -> None:
    kept_list = kept.tolist()
    assert len(kept_list) == min(keep, num_tokens)
    assert kept_list == sorted(set(kept_list))
    assert all(0 <= index < num_tokens for index in kept_list)
    assert set(range(num_tokens - min(window, num_tokens), num_tokens)) <= set(kept_list)


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    num_tokens=st.integers(1, 120),
    window=st.integers(1, 40),
    keep=st.integers(1, 2**70),
)
def test_selection_of_arbitrary_scores_is_well_formed(data, num_tokens, window, keep):
    keep = max(keep, min(window, num_tokens))
    past = max(num_tokens - window, 0)
    scores = torch.tensor(data.draw(st.lists(ANY_SCORE, min_size=past, max_size=past)), dtype=torch.float32)
    _assert_well_formed_selection(ref.select_tokens(scores, num_tokens, keep, window), num_tokens, keep, window)
    assert sorted(ref.descending_ranks(scores).tolist()) == list(range(1, past + 1))


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    num_kv_heads=st.integers(1, 4),
    num_tokens=st.integers(1, 80),
    window=st.integers(1, 40),
    keep=st.integers(1, 100),
)
def test_snapkv_selection_is_well_formed_per_head(data, num_kv_heads, num_tokens, window, keep):
    keep = max(keep, min(window, num_tokens))
    past = max(num_tokens - window, 0)
    row = st.lists(ANY_SCORE, min_size=past, max_size=past)
    rows = data.draw(st.lists(row, min_size=num_kv_heads, max_size=num_kv_heads))
    scores = torch.tensor(rows, dtype=torch.float32).view(num_kv_heads, past)
    per_head = ref.snapkv_select(scores, num_tokens, keep, window)
    assert per_head.shape == (num_kv_heads, min(keep, num_tokens))
    for head, kept in enumerate(per_head):
        _assert_well_formed_selection(kept, num_tokens, keep, window)
        assert kept.tolist() == ref.select_tokens(scores[head], num_tokens, keep, window).tolist()


@settings(max_examples=100, deadline=None)
@given(
    obs_layers=st.integers(1, 6),
    extra_layers=st.integers(0, 6),
    tau=st.floats(min_value=1e-6, max_value=10.0),
    length=st.integers(1, 30),
    seed=st.integers(0, 2**31 - 1),
)
def test_adaptive_rule_never_selects_min_layer_or_earlier(obs_layers, extra_layers, tau, length, seed):
    min_layer = obs_layers - 1 + extra_layers
    generator = torch.Generator().manual_seed(seed)
    rule = ref.AdaptiveLayerRule(min_layer=min_layer, obs_layers=obs_layers, tau=tau, top=max(1, length // 3))
    chosen = None
    for layer in range(rule.first_observed_layer, min_layer + 10):
        if rule.observe(layer, torch.randperm(length, generator=generator) + 1):
            chosen = layer
            break
    assert chosen is None or chosen > min_layer
    assert rule.selected_layer == chosen
    assert all(value >= 0.0 for value in rule.variances.values())


def test_layer_shared_scores_hand_computed():
    # Layer 0 attends mostly to token 0, layer 1 (ten times the mass) evenly to tokens 1 and 2: as shares,
    # each layer counts alike, so token 0 (0.6) ranks between tokens 1 and 2 (0.2 + 0.5, 0.2 + 0.5).
    layers = [torch.tensor([3.0, 1.0, 1.0]), torch.tensor([0.0, 25.0, 25.0])]
    assert torch.allclose(ref.layer_shared_scores(layers), torch.tensor([0.6, 0.7, 0.7]))
    per_head = [torch.tensor([[1.0, 3.0], [2.0, 2.0]]), torch.tensor([[0.0, 5.0], [4.0, 0.0]])]
    assert torch.allclose(ref.layer_shared_scores(per_head), torch.tensor([[0.25, 1.75], [1.5, 0.5]]))


def test_layer_shared_scores_of_a_zero_layer_and_no_layers():
    assert torch.equal(
        ref.layer_shared_scores([torch.zeros(3), torch.tensor([0.0, 2.0, 2.0])]), torch.tensor([0, 0.5, 0.5])
    )
    with pytest.raises(ValueError, match="at least one layer"):
        ref.layer_shared_scores([])
