"""The paged torch references against the dense reference they wrap, and against plain loops."""

from __future__ import annotations

import pytest
import torch

from asl_vllm.scoring import dispatch, paged
from asl_vllm.scoring import reference as ref

GARBAGE = 1e4  # what every slot outside a request's blocks holds: reading one shows in the result


def _paged(keys_per_req: list[torch.Tensor], block_size: int, generator: torch.Generator):
    """Scatter each request's keys[N, G, d] over shuffled blocks of a garbage-filled cache; -> cache, table."""
    _, num_kv_heads, head_dim = keys_per_req[0].shape
    blocks_per_req = max(-(-k.shape[0] // block_size) for k in keys_per_req) + 1
    num_blocks = len(keys_per_req) * blocks_per_req + 2
    cache = torch.full((num_blocks, block_size, num_kv_heads, head_dim), GARBAGE)
    order = torch.randperm(num_blocks, generator=generator)
    table = order[: len(keys_per_req) * blocks_per_req].view(len(keys_per_req), blocks_per_req).int()
    for r, keys in enumerate(keys_per_req):
        for token in range(keys.shape[0]):
            cache[table[r, token // block_size], token % block_size] = keys[token]
    return cache, table


def test_gather_follows_the_block_table():
    cache = torch.arange(4 * 2 * 1 * 1, dtype=torch.float32).view(4, 2, 1, 1)
    tokens = paged.gather_tokens(cache, torch.tensor([2, 0, 3]), 1, 4)
    assert tokens.flatten().tolist() == [5.0, 0.0, 1.0, 6.0]
    assert paged.gather_tokens(cache, torch.tensor([2, 0, 3]), 2, 2).flatten().tolist() == [0.0, 1.0]
    assert paged.gather_tokens(cache, torch.tensor([2, 0, 3]), 3, 0).shape == (0, 1, 1)
    with pytest.raises(IndexError, match="need 4 blocks"):
        paged.gather_tokens(cache, torch.tensor([2, 0, 3]), 5, 2)


@pytest.mark.parametrize("block_size", [16, 32, 128])
@pytest.mark.parametrize(("num_heads", "num_kv_heads"), [(4, 4), (9, 3), (8, 1)])
def test_paged_histogram_equals_the_dense_reference(block_size, num_heads, num_kv_heads):
    generator = torch.Generator().manual_seed(block_size + num_heads)
    window = 8
    lengths = [1, window - 1, window, window + 1, 127, 129, 300]
    keys = [torch.randn(n, num_kv_heads, 16, generator=generator) for n in lengths]
    cache, table = _paged(keys, block_size, generator)
    q_win = torch.randn(len(lengths), window, num_heads, 16, generator=generator)
    got = paged.paged_window_histogram(q_win, cache, table, torch.tensor(lengths, dtype=torch.int32), 0.25)
    assert got.shape == (len(lengths), num_heads, 300 - window)
    for r, n in enumerate(lengths):
        w = min(window, n)
        torch.testing.assert_close(got[r, :, : n - w], ref.window_histogram(q_win[r, :w], keys[r], 0.25))
        assert not got[r, :, n - w :].any()


def test_paged_histogram_reads_a_strided_cache_view():
    # CPU-style [num_blocks, G, block_size, 2 * d] storage, seen as the [blocks, block_size, G, d] K view.
    generator = torch.Generator().manual_seed(4)
    keys = [torch.randn(40, 2, 16, generator=generator)]
    dense, table = _paged(keys, 16, generator)
    storage = torch.randn(dense.shape[0], 2, 16, 32, generator=generator)
    k_view = storage[..., :16].permute(0, 2, 1, 3)
    k_view.copy_(dense)
    q_win = torch.randn(1, 4, 4, 16, generator=generator)
    got = paged.paged_window_histogram(q_win, k_view, table, torch.tensor([40]), 0.25)
    torch.testing.assert_close(got[0], ref.window_histogram(q_win[0], keys[0], 0.25))


def test_pool_and_group_equals_the_reference_per_request():
    generator = torch.Generator().manual_seed(0)
    lengths = [0, 1, 5, 64]
    hist = torch.rand(4, 6, 64, generator=generator)
    got = paged.pool_and_group(hist, torch.tensor(lengths), 7, 2)
    for r, m in enumerate(lengths):
        expected = ref.kv_head_scores(ref.pool_scores(hist[r, :, :m], 7), 2)
        torch.testing.assert_close(got[r, :, :m], expected)
        assert not got[r, :, m:].any()


@pytest.mark.parametrize("ties", [False, True])
def test_batch_ranks_equal_per_request_ranks(ties):
    generator = torch.Generator().manual_seed(int(ties))
    lengths = [0, 1, 9, 50]
    scores = torch.rand(4, 50, generator=generator)
    if ties:
        scores = (scores * 3).floor()
    got = paged.batch_ranks(scores, lengths)
    for r, m in enumerate(lengths):
        assert got[r, :m].tolist() == ref.descending_ranks(scores[r, :m]).tolist()
        assert not got[r, m:].any()


def test_batch_rank_variance_equals_the_reference():
    generator = torch.Generator().manual_seed(9)
    lengths, tops = [0, 3, 40, 100], [5, 1, 10, 100]
    ranks = torch.zeros(4, 8, 100, dtype=torch.long)
    for r, m in enumerate(lengths):
        for layer in range(8):
            ranks[r, layer, :m] = torch.randperm(m, generator=generator) + 1
    got = paged.batch_rank_variance(ranks, lengths, tops)
    assert got.dtype == torch.float64
    assert got.tolist() == [
        ref.rank_variance(ranks[r, :, :m], t) for r, (m, t) in enumerate(zip(lengths, tops, strict=True))
    ]


def _compact_by_hand(cache, table_row, kept, end_slot):
    """Plain loops: read every kept token first, then write the tail slots."""
    block_size = cache.shape[1]
    moved = [[cache[table_row[s // block_size], s % block_size, g].clone() for s in row] for g, row in enumerate(kept)]
    out = cache.clone()
    first = end_slot - len(kept[0])
    for g, tokens in enumerate(moved):
        for j, token in enumerate(tokens):
            slot = first + j
            out[table_row[slot // block_size], slot % block_size, g] = token
    return out


@pytest.mark.parametrize("block_size", [16, 32, 128])
@pytest.mark.parametrize(("num_tokens", "keep"), [(1, 1), (100, 33), (129, 128), (300, 160), (40, 40), (50, 0)])
def test_compact_tail_equals_plain_loops(block_size, num_tokens, keep):
    generator = torch.Generator().manual_seed(num_tokens + keep)
    keys = [torch.randn(num_tokens, 3, 16, generator=generator)]
    k_cache, table = _paged(keys, block_size, generator)
    v_cache = k_cache + 0.5
    rows = [torch.sort(torch.randperm(num_tokens, generator=generator)[:keep]).values for _ in range(3)]
    rows[1] = torch.arange(keep)  # every source may sit on a later destination
    rows[2] = torch.arange(num_tokens - keep, num_tokens)  # already in place
    kept = torch.stack(rows)
    expected_k = _compact_by_hand(k_cache, table[0].tolist(), kept.tolist(), num_tokens)
    expected_v = _compact_by_hand(v_cache, table[0].tolist(), kept.tolist(), num_tokens)
    paged.compact_tail(k_cache, v_cache, table[0], kept, num_tokens)
    torch.testing.assert_close(k_cache, expected_k, rtol=0, atol=0)
    torch.testing.assert_close(v_cache, expected_v, rtol=0, atol=0)
    tail = paged.gather_tokens(k_cache, table[0], num_tokens - keep, keep)
    for g in range(3):
        torch.testing.assert_close(tail[:, g], keys[0][kept[g], g], rtol=0, atol=0)


@pytest.mark.parametrize(
    "kept", [torch.tensor([[3, 2]]), torch.tensor([[1, 1]]), torch.tensor([[0, 9]]), torch.tensor([[-1, 2]])]
)
def test_compact_tail_refuses_unsafe_lists(kept):
    cache = torch.zeros(1, 16, 1, 16)
    with pytest.raises(ValueError, match="ascending"):
        paged.compact_tail(cache, cache.clone(), torch.tensor([0]), kept, 9)


def test_past_lengths_and_the_cpu_dispatch():
    assert paged.past_lengths(torch.tensor([1, 31, 32, 33, 500]), 32).tolist() == [0, 0, 0, 1, 468]
    assert not dispatch.triton_available() or not torch.zeros(1).is_cuda
    generator = torch.Generator().manual_seed(1)
    hist = torch.rand(1, 2, 10, generator=generator)
    torch.testing.assert_close(dispatch.pool_and_group(hist, [10], 3, 1), paged.pool_and_group(hist, [10], 3, 1))
