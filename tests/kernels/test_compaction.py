"""The in-place compaction kernel against the torch reference, on overlapping and strided caches."""

from __future__ import annotations

import pytest
import torch

from asl_vllm.kernels import compaction
from asl_vllm.scoring import paged

from .cases import paged_cache


def _kept_lists(num_tokens: int, keep: int, num_kv_heads: int, seed: int) -> torch.Tensor:
    """Random sorted lists, plus the adversarial ones: the head (every source below its destination) and the tail."""
    generator = torch.Generator().manual_seed(seed)
    rows = [torch.sort(torch.randperm(num_tokens, generator=generator)[:keep]).values for _ in range(num_kv_heads)]
    rows[0] = torch.arange(keep)
    if num_kv_heads > 1:
        rows[1] = torch.arange(num_tokens - keep, num_tokens)
    return torch.stack(rows)


@pytest.mark.parametrize("block_size", [16, 32, 128])
@pytest.mark.parametrize(
    ("num_tokens", "keep"), [(1, 1), (33, 32), (100, 33), (129, 128), (300, 160), (300, 1), (40, 40)]
)
def test_matches_torch(block_size, num_tokens, keep):
    k_cache, table = paged_cache([num_tokens, 50], block_size, 3, 64, torch.float32, seed=num_tokens + block_size)
    v_cache = -k_cache
    kept = _kept_lists(num_tokens, keep, 3, seed=keep)
    expected_k, expected_v = k_cache.clone(), v_cache.clone()
    paged.compact_tail(expected_k, expected_v, table[0], kept, num_tokens)
    compaction.compact_tail(k_cache, v_cache, table[0], kept, num_tokens)
    # Exact copies; the other request's blocks and the garbage blocks are untouched.
    torch.testing.assert_close(k_cache, expected_k, rtol=0, atol=0)
    torch.testing.assert_close(v_cache, expected_v, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_and_head_dim_128(dtype):
    k_cache, table = paged_cache([250], 16, 8, 128, dtype, seed=1)
    v_cache = k_cache * 2
    kept = _kept_lists(250, 70, 8, seed=1)
    expected_k, expected_v = k_cache.clone(), v_cache.clone()
    paged.compact_tail(expected_k, expected_v, table[0], kept, 250)
    compaction.compact_tail(k_cache, v_cache, table[0], kept, 250)
    assert torch.equal(k_cache, expected_k) and torch.equal(v_cache, expected_v)


@pytest.mark.parametrize("head_major", [False, True])
def test_k_and_v_views_of_one_strided_cache(head_major):
    # A FlashAttention-style [2, num_blocks, block_size, G, d] cache, or one stored head-major like the CPU backend's.
    dense, table = paged_cache([200], 32, 2, 64, torch.float32, seed=3)
    kv = torch.stack([dense, dense + 1])
    if head_major:
        kv = kv.transpose(2, 3).contiguous().transpose(2, 3)
    kept = _kept_lists(200, 90, 2, seed=3)
    expected = kv.clone()
    paged.compact_tail(expected[0], expected[1], table[0], kept, 200)
    compaction.compact_tail(kv[0], kv[1], table[0], kept, 200)
    assert torch.equal(kv, expected)


def test_compacting_below_the_prompt_end():
    # A deeper layer already holds k' tokens at [N - k', N); a budget moves B of them to [N - B, N).
    k_cache, table = paged_cache([160], 16, 2, 64, torch.float32, seed=4)
    v_cache = k_cache + 3
    kept = 100 + _kept_lists(60, 20, 2, seed=4)
    expected_k, expected_v = k_cache.clone(), v_cache.clone()
    paged.compact_tail(expected_k, expected_v, table[0], kept, 160)
    compaction.compact_tail(k_cache, v_cache, table[0], kept, 160)
    assert torch.equal(k_cache, expected_k) and torch.equal(v_cache, expected_v)


def test_nothing_kept_and_bad_shapes():
    k_cache, table = paged_cache([40], 16, 2, 64, torch.float32, seed=0)
    before = k_cache.clone()
    compaction.compact_tail(k_cache, k_cache, table[0], torch.zeros(2, 0, dtype=torch.long), 40)
    assert torch.equal(k_cache, before)
    with pytest.raises(ValueError):
        compaction.compact_tail(k_cache, k_cache, table[0], torch.zeros(3, 4, dtype=torch.long), 40)
    with pytest.raises(ValueError):
        compaction.compact_tail(k_cache, k_cache, table[0], torch.zeros(2, 41, dtype=torch.long), 40)
