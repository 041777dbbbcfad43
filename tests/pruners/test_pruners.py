"""Pruners: which layer selects, which score ranks, and which re-run."""

from __future__ import annotations

import pytest
import torch

from asl_vllm.config import PrunerConfig
from asl_vllm.pruners import make_pruner
from asl_vllm.pruners.asl import ASL
from asl_vllm.scoring import reference as ref
from asl_vllm.scoring.step_scores import StepScores


def _scores(seed: int = 0, counts: tuple[int, ...] = (80,)) -> StepScores:
    generator = torch.Generator().manual_seed(seed)
    total = sum(counts)
    query = torch.randn(total, 9, 16, generator=generator)
    keys = torch.randn(total, 3, 16, generator=generator)
    starts = [sum(counts[:index]) for index in range(len(counts))]
    return StepScores(query, keys, starts, counts, scale=0.25, window=32, pool_kernel=7)


def _pruner(**settings):
    return make_pruner(PrunerConfig(**settings).validate().resolve(30))


def test_gemfilter_selects_at_its_filter_layer_by_the_last_query_and_re_runs():
    pruner = _pruner(pruner="gemfilter", fixed_layer=12)
    scores = _scores()
    assert pruner.two_pass
    assert [layer for layer in range(30) if pruner.wants_scores(layer)] == [12]
    assert type(pruner).observe_all(11, [pruner], scores, [0]) == [False]
    assert type(pruner).observe_all(12, [pruner], scores, [0]) == [True]
    torch.testing.assert_close(pruner.token_scores(scores, 0), ref.gemfilter_scores(scores.query[-1], scores.keys, 32))


def test_fastkv_selects_at_its_layer_by_the_window_score_and_propagates():
    pruner = _pruner(pruner="fastkv", fixed_layer=14)
    scores = _scores()
    assert not pruner.two_pass
    assert type(pruner).observe_all(14, [pruner], scores, [0]) == [True]
    torch.testing.assert_close(pruner.token_scores(scores, 0), scores.token_scores[0])


@pytest.mark.parametrize("two_pass", [False, True])
def test_asl_two_pass_uses_the_adaptive_rule_unchanged(two_pass):
    """Same layer decision with and without the re-run: only what happens after selection differs."""
    pruner = _pruner(pruner="asl", two_pass=two_pass, tau=1.0, select_k=40)
    assert pruner.two_pass == two_pass
    observed = [layer for layer in range(30) if pruner.wants_scores(layer)]
    assert observed[0] == 2  # min_layer 9 - obs_layers 8 + 1
    chosen = next(layer for layer in observed if ASL.observe_all(layer, [pruner], _scores(layer), [0])[0])
    assert chosen >= 10


def test_asl_batch_decides_each_request_as_it_would_alone():
    """Requests of different lengths and taus, observed together, pick the layers each picks alone."""
    settings = [{"tau": 1.0, "select_k": 40}, {"tau": 1.0, "select_k": 60}, {"tau": 0.98, "select_k": 36}]
    counts = (80, 120, 64)
    together = [_pruner(pruner="asl", **each) for each in settings]
    alone = [_pruner(pruner="asl", **each) for each in settings]
    chosen_together: dict[int, int] = {}
    chosen_alone: dict[int, int] = {}
    for layer in range(2, 30):
        scores = _scores(layer, counts)
        members = [index for index, pruner in enumerate(together) if pruner.wants_scores(layer)]
        picked = ASL.observe_all(layer, [together[index] for index in members], scores, members)
        chosen_together.update({index: layer for index, hit in zip(members, picked, strict=True) if hit})
        for index, pruner in enumerate(alone):
            if pruner.wants_scores(layer):
                # The same request scored on its own rows only.
                single = StepScores(
                    scores.query[scores.starts[index] : scores.starts[index] + counts[index]],
                    scores.keys[scores.starts[index] : scores.starts[index] + counts[index]],
                    [0],
                    [counts[index]],
                    scale=0.25,
                    window=32,
                    pool_kernel=7,
                )
                if ASL.observe_all(layer, [pruner], single, [0])[0]:
                    chosen_alone[index] = layer
    assert chosen_together == chosen_alone
    assert len(chosen_together) == 3


def test_snapkv_never_selects():
    pruner = _pruner(pruner="snapkv", kv_budget=64)
    assert not pruner.two_pass
    assert not any(pruner.wants_scores(layer) for layer in range(30))
