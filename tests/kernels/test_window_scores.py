"""The paged window-histogram kernel against the torch reference, in Triton's interpreter."""

from __future__ import annotations

import pytest
import torch

from asl_vllm.kernels import window_scores
from asl_vllm.scoring import paged
from asl_vllm.scoring import reference as ref

from .cases import paged_cache

WINDOW = 32
# N in {1, w - 1, w, w + 1, 127, 129}: empty, one-token and block-straddling pasts.
LENGTHS = [1, WINDOW - 1, WINDOW, WINDOW + 1, 127, 129]
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 1e-4, torch.float16: 1e-4}


def _check(q_win, k_cache, table, lengths, scale, **tuning):
    seq_lens = torch.tensor(lengths, dtype=torch.int32)
    got = window_scores.paged_window_histogram(q_win, k_cache, table, seq_lens, scale, **tuning)
    expected = paged.paged_window_histogram(q_win, k_cache, table, seq_lens, scale)
    assert got.shape == expected.shape and got.dtype == torch.float32
    tolerance = TOLERANCE[k_cache.dtype]
    torch.testing.assert_close(got, expected, atol=tolerance, rtol=tolerance)
    return got


@pytest.mark.parametrize(("num_heads", "num_kv_heads"), [(4, 4), (9, 3), (8, 2), (8, 1)])
@pytest.mark.parametrize("block_size", [16, 32, 128])
def test_matches_torch_across_gqa_and_block_sizes(num_heads, num_kv_heads, block_size):
    k_cache, table = paged_cache(LENGTHS, block_size, num_kv_heads, 64, torch.float32, seed=block_size + num_heads)
    q_win = torch.randn(len(LENGTHS), WINDOW, num_heads, 64, generator=torch.Generator().manual_seed(num_heads))
    got = _check(q_win, k_cache, table, LENGTHS, 0.125)
    # Each window row's softmax sums to 1 over all N keys, so the past share is at most w per head.
    assert float(got.sum(dim=-1).max()) <= WINDOW + 1e-3


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_caches(dtype):
    k_cache, table = paged_cache(LENGTHS, 16, 2, 64, dtype, seed=3)
    q_win = torch.randn(len(LENGTHS), WINDOW, 8, 64, generator=torch.Generator().manual_seed(3)).to(dtype)
    _check(q_win, k_cache, table, LENGTHS, 0.125)
    # fp32 queries over a half cache take the fp32 product, as the reference does.
    _check(q_win.float(), k_cache, table, LENGTHS, 0.125)


def test_head_dim_128_in_a_strided_cache_view():
    # A [num_blocks, G, block_size, 2 * d] storage seen as the [blocks, block_size, G, d] K view.
    dense, table = paged_cache([100, 16], 32, 2, 128, torch.float32, seed=7)
    storage = torch.randn(dense.shape[0], 2, 32, 2 * 128)
    k_view = storage[..., 128:].permute(0, 2, 1, 3)
    k_view.copy_(dense)
    q_win = torch.randn(2, 16, 4, 128, generator=torch.Generator().manual_seed(7))
    _check(q_win, k_view, table, [100, 16], 128**-0.5)


@pytest.mark.parametrize(("block_n", "split_tokens"), [(16, 16), (32, 64), (64, 1024)])
def test_splits_combine_to_the_same_softmax(block_n, split_tokens):
    lengths = [200, 33, 1]
    k_cache, table = paged_cache(lengths, 16, 1, 32, torch.float32, seed=block_n)
    q_win = torch.randn(3, 8, 3, 32, generator=torch.Generator().manual_seed(block_n)) * 3
    _check(q_win, k_cache, table, lengths, 0.5, block_n=block_n, split_tokens=split_tokens)


def test_one_dominant_key_far_from_the_window():
    # A logit 80 above the rest in another split than the window: the combined softmax must still be exact.
    lengths = [300]
    k_cache, table = paged_cache(lengths, 16, 1, 16, torch.float32, seed=1)
    slot = 5
    k_cache[table[0, slot // 16], slot % 16, 0] = 10.0
    q_win = torch.ones(1, 4, 2, 16)
    got = _check(q_win, k_cache, table, lengths, 0.5, block_n=16, split_tokens=64)
    torch.testing.assert_close(got[0, :, slot], torch.full((2,), 4.0))


def test_all_requests_shorter_than_the_window():
    k_cache, table = paged_cache([3, 32], 16, 2, 64, torch.float32, seed=2)
    q_win = torch.randn(2, 32, 4, 64)
    got = window_scores.paged_window_histogram(q_win, k_cache, table, torch.tensor([3, 32], dtype=torch.int32), 0.1)
    assert got.shape == (2, 4, 0)


def test_rejects_shapes_it_cannot_serve():
    k_cache, table = paged_cache([40], 16, 3, 64, torch.float32, seed=0)
    with pytest.raises(ValueError):
        window_scores.paged_window_histogram(torch.zeros(1, 8, 4, 64), k_cache, table, torch.tensor([40]), 1.0)
    k_cache, table = paged_cache([40], 16, 1, 64, torch.float32, seed=0)
    with pytest.raises(ValueError):
        window_scores.paged_window_histogram(torch.zeros(1, 8, 4, 48), k_cache, table, torch.tensor([40]), 1.0)


@pytest.mark.parametrize("head_dim", [8, 48])
def test_head_dims_padded_to_a_tile(head_dim):
    k_cache, table = paged_cache([40, 17], 16, 1, head_dim, torch.float32, seed=0)
    q_win = torch.randn(2, 8, 4, head_dim, generator=torch.Generator().manual_seed(0))
    _check(q_win, k_cache, table, [40, 17], 0.2)


@pytest.mark.slow
def test_a_few_thousand_tokens():
    lengths = [3000, 1100]
    k_cache, table = paged_cache(lengths, 128, 3, 64, torch.bfloat16, seed=11)
    q_win = torch.randn(2, WINDOW, 9, 64, generator=torch.Generator().manual_seed(11)).bfloat16()
    # Few large splits: the interpreter's cost is per program.
    _check(q_win, k_cache, table, lengths, 0.125, split_tokens=1024)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_dense_keys_as_pages_of_one_token(dtype):
    # How the engine scores a step: the step's keys [T, G, d], each request's rows contiguous, seen as
    # [T, 1, G, d] with block_table[r, j] = row_start_r + j (padding columns 0).
    lengths = [40, 5, 33, 8]
    starts = [0, 40, 45, 78]
    generator = torch.Generator().manual_seed(8)
    keys = torch.randn(sum(lengths), 2, 64, generator=generator).to(dtype)
    table = torch.zeros(len(lengths), max(lengths), dtype=torch.int32)
    for r, (start, n) in enumerate(zip(starts, lengths, strict=True)):
        table[r, :n] = torch.arange(start, start + n)
    q_win = torch.randn(len(lengths), WINDOW, 6, 64, generator=generator).to(dtype)
    got = _check(q_win, keys.view(-1, 1, 2, 64), table, lengths, 0.125)
    for r, (start, n) in enumerate(zip(starts, lengths, strict=True)):
        w = min(WINDOW, n)
        dense = ref.window_histogram(q_win[r, :w], keys[start : start + n], 0.125)
        torch.testing.assert_close(got[r, :, : n - w], dense, atol=1e-4, rtol=1e-4)
