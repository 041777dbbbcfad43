"""LayerScores: each score equals the reference function on the same rows, and is computed once."""

from __future__ import annotations

import torch

from asl_vllm.scoring import reference as ref
from asl_vllm.scoring.layer_scores import LayerScores


def _rows(num_tokens: int, num_heads: int = 9, num_kv_heads: int = 3, dim: int = 16):
    generator = torch.Generator().manual_seed(num_tokens)
    return (
        torch.randn(num_tokens, num_heads, dim, generator=generator),
        torch.randn(num_tokens, num_kv_heads, dim, generator=generator),
    )


def test_scores_equal_the_reference_on_the_last_rows():
    query, keys = _rows(100)
    scores = LayerScores(query, keys, scale=0.25, window=32, pool_kernel=7)
    expected_pooled = ref.pool_scores(ref.window_histogram(query[-32:], keys, 0.25), 7)
    torch.testing.assert_close(scores.pooled, expected_pooled)
    torch.testing.assert_close(scores.gemfilter, ref.gemfilter_scores(query[-1], keys, 32))
    assert scores.pooled.shape == (9, 68) and scores.gemfilter.shape == (68,)
    assert scores.pooled is scores.pooled  # computed on first use only


def test_window_longer_than_the_rows_leaves_no_past():
    query, keys = _rows(10)
    scores = LayerScores(query, keys, scale=0.25, window=32, pool_kernel=7)
    assert scores.window == 10
    assert scores.pooled.shape == (9, 0) and scores.gemfilter.shape == (0,)
