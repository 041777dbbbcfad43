"""Selection policies: which layer selects, which score ranks, and which re-run."""

from __future__ import annotations

import pytest
import torch

from asl_vllm.config import PrunerConfig
from asl_vllm.policies import make_policy
from asl_vllm.scoring import reference as ref
from asl_vllm.scoring.layer_scores import LayerScores


def _scores(seed: int = 0) -> LayerScores:
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(80, 9, 16, generator=generator)
    keys = torch.randn(80, 3, 16, generator=generator)
    return LayerScores(query, keys, scale=0.25, window=32, pool_kernel=7)


def _policy(**settings):
    return make_policy(PrunerConfig(**settings).validate().resolve(30))


def test_gemfilter_selects_at_its_filter_layer_by_the_last_query_and_re_runs():
    policy = _policy(pruner="gemfilter", fixed_layer=12)
    scores = _scores()
    assert policy.two_pass
    assert [layer for layer in range(30) if policy.wants_scores(layer)] == [12]
    assert not policy.observe(11, scores) and policy.observe(12, scores)
    torch.testing.assert_close(policy.token_scores(scores), ref.gemfilter_scores(scores.query[-1], scores.keys, 32))


def test_fastkv_selects_at_its_layer_by_the_window_score_and_propagates():
    policy = _policy(pruner="fastkv", fixed_layer=14)
    scores = _scores()
    assert not policy.two_pass
    assert policy.observe(14, scores)
    torch.testing.assert_close(policy.token_scores(scores), ref.token_scores(scores.pooled))


@pytest.mark.parametrize("two_pass", [False, True])
def test_asl_two_pass_uses_the_adaptive_rule_unchanged(two_pass):
    """Same layer decision with and without the re-run: only what happens after selection differs."""
    policy = _policy(pruner="asl", two_pass=two_pass, tau=1.0, select_k=40)
    assert policy.two_pass == two_pass
    observed = [layer for layer in range(30) if policy.wants_scores(layer)]
    assert observed[0] == 2  # min_layer 9 - obs_layers 8 + 1
    chosen = next(layer for layer in observed if policy.observe(layer, _scores(layer)))
    assert chosen >= 10
    torch.testing.assert_close(policy.token_scores(_scores()), ref.token_scores(_scores().pooled))


def test_snapkv_never_selects():
    policy = _policy(pruner="snapkv", kv_budget=64)
    assert not policy.two_pass
    assert not any(policy.wants_scores(layer) for layer in range(30))
