"""Pooling + GQA sum and the batched rank variance kernels against the torch references."""

from __future__ import annotations

import pytest
import torch

from asl_vllm.kernels import score_reduce
from asl_vllm.scoring import paged


@pytest.mark.parametrize(("num_heads", "num_kv_heads"), [(3, 3), (9, 3), (8, 2), (8, 1)])
@pytest.mark.parametrize("kernel", [1, 7])
def test_pool_and_group_matches_torch(num_heads, num_kv_heads, kernel):
    lengths = [0, 1, 5, 300, 513]
    hist = torch.rand(len(lengths), num_heads, max(lengths), generator=torch.Generator().manual_seed(num_heads))
    got = score_reduce.pool_and_group(hist, lengths, kernel, num_kv_heads)
    torch.testing.assert_close(got, paged.pool_and_group(hist, lengths, kernel, num_kv_heads))


def test_pool_and_group_ignores_what_lies_past_each_length():
    # Garbage past a request's length must not leak into its last tokens' pooled scores.
    hist = torch.rand(2, 4, 40, generator=torch.Generator().manual_seed(0))
    hist[0, :, 20:] = 1e6
    lengths = torch.tensor([20, 40], dtype=torch.int32)
    got = score_reduce.pool_and_group(hist, lengths, 7, 2)
    torch.testing.assert_close(got, paged.pool_and_group(hist, lengths, 7, 2))
    assert float(got[0].max()) < 10


def test_pool_and_group_reads_a_strided_histogram():
    hist = torch.rand(2, 64, 6, generator=torch.Generator().manual_seed(1)).transpose(1, 2)
    torch.testing.assert_close(
        score_reduce.pool_and_group(hist, [64, 10], 5, 3), paged.pool_and_group(hist, [64, 10], 5, 3)
    )


def _ranked_batch(lengths: list[int], layers: int, ties: bool, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    scores = torch.rand(len(lengths), layers, max(lengths), generator=generator)
    if ties:
        scores = (scores * 4).floor()
    ranks = torch.stack([paged.batch_ranks(scores[:, layer], lengths) for layer in range(layers)], dim=1)
    return ranks


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("layers", [1, 3, 8])
def test_batch_rank_variance_matches_torch(ties, layers):
    lengths = [1, 40, 257, 600, 0]
    ranks = _ranked_batch(lengths, layers, ties, seed=layers)
    for tops in ([1, 1, 1, 1, 1], [16, 0, 300, 1000, 5], [600] * 5):
        got = score_reduce.batch_rank_variance(ranks, lengths, tops)
        torch.testing.assert_close(got, paged.batch_rank_variance(ranks, lengths, tops), rtol=1e-12, atol=0)


def test_batch_rank_variance_splits_long_requests():
    lengths = [1500, 700]
    ranks = _ranked_batch(lengths, 8, False, seed=5)
    tops = torch.tensor([200, 700])
    got = score_reduce.batch_rank_variance(ranks, lengths, tops, chunk=256)
    torch.testing.assert_close(got, paged.batch_rank_variance(ranks, lengths, tops), rtol=1e-12, atol=0)
