"""StepScores: a batch of requests scored together equals the reference on each request's own rows."""

from __future__ import annotations

import torch

from asl_vllm.scoring import reference as ref
from asl_vllm.scoring.step_scores import StepScores

NUM_HEADS, NUM_KV_HEADS, DIM = 9, 3, 16


def _rows(num_tokens: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(num_tokens, NUM_HEADS, DIM, generator=generator),
        torch.randn(num_tokens, NUM_KV_HEADS, DIM, generator=generator),
    )


def _reference_kv_scores(query: torch.Tensor, keys: torch.Tensor, window: int) -> torch.Tensor:
    w = min(window, keys.shape[0])
    pooled = ref.pool_scores(ref.window_histogram(query[-w:], keys, 0.25), 7)
    return ref.kv_head_scores(pooled, NUM_KV_HEADS)


def test_each_request_of_a_batch_equals_the_reference_on_its_rows():
    # Three requests of different lengths (one shorter than the window) between rows of other requests.
    counts, gaps = [100, 20, 57], [3, 0, 11]
    query, keys = _rows(sum(counts) + sum(gaps) + 5)
    starts, row = [], 0
    for count, gap in zip(counts, gaps, strict=True):
        row += gap
        starts.append(row)
        row += count
    scores = StepScores(query, keys, starts, counts, scale=0.25, window=32, pool_kernel=7)
    assert scores.lengths == [68, 0, 25]
    assert scores.kv_scores.shape == (3, NUM_KV_HEADS, 68)
    for r, (start, count) in enumerate(zip(starts, counts, strict=True)):
        expected = _reference_kv_scores(query[start : start + count], keys[start : start + count], 32)
        length = scores.lengths[r]
        torch.testing.assert_close(scores.kv_scores[r, :, :length], expected)
        torch.testing.assert_close(scores.token_scores[r, :length], ref.token_scores(expected))
        assert not scores.kv_scores[r, :, length:].any()  # padding after M_r stays zero


def test_scores_are_computed_once():
    query, keys = _rows(80)
    scores = StepScores(query, keys, [0], [80], scale=0.25, window=32, pool_kernel=7)
    assert scores.kv_scores is scores.kv_scores
    assert scores.token_scores is scores.token_scores


def test_the_histogram_reads_request_lengths_from_the_host(monkeypatch):
    # The launchers read lengths with `.tolist()`: from a device tensor that is a host sync per layer. The
    # q and k live on another device here (meta), so only lengths built on the host arrive on the CPU.
    from asl_vllm.scoring import dispatch

    seen = []

    def recording(q_win, keys, table, seq_lens, scale):
        seen.append((seq_lens.device.type, seq_lens.tolist()))
        return torch.zeros(q_win.shape[0], NUM_HEADS, 18, device=q_win.device)

    monkeypatch.setattr(dispatch, "paged_window_histogram", recording)
    monkeypatch.setattr(dispatch, "pool_and_group", lambda hist, lengths, kernel, kv_heads: hist[:, :kv_heads])
    query, keys = (tensor.to("meta") for tensor in _rows(90))
    scores = StepScores(query, keys, [0, 50], [50, 40], scale=0.25, window=32, pool_kernel=7).kv_scores
    assert scores.shape == (2, NUM_KV_HEADS, 18)
    assert seen == [("cpu", [50, 40])]


def _paged(keys: torch.Tensor, block_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`keys[N, G, d]` in a paged cache `[blocks, block_size, G, d]` of shuffled blocks, and the block row."""
    num_blocks = -(-keys.shape[0] // block_size)
    row = torch.randperm(num_blocks + 3, generator=torch.Generator().manual_seed(seed))[:num_blocks].to(torch.int32)
    cache = torch.zeros(num_blocks + 3, block_size, NUM_KV_HEADS, DIM)
    for token in range(keys.shape[0]):
        cache[row[token // block_size], token % block_size] = keys[token]
    return cache, row


def test_a_chunked_prompt_scored_from_the_cache_equals_the_prompt_scored_in_one_step():
    # The last chunk's rows (window included) hold the queries; every key is read from the layer's cache.
    from asl_vllm.scoring.kv_layout import DENSE
    from asl_vllm.scoring.step_scores import CachedKeys, LayerCache

    num_tokens, chunk, block_size = 300, 70, 16
    query, keys = _rows(num_tokens, seed=3)
    cache, row = _paged(keys, block_size, seed=4)
    whole = StepScores(query, keys, [0], [num_tokens], scale=0.25, window=32, pool_kernel=7)
    # A one-step request beside it in the same step, scored from its rows.
    other_query, other_keys = _rows(50, seed=5)
    chunked = StepScores(
        torch.cat([other_query, query[-chunk:]]),
        torch.cat([other_keys, keys[-chunk:]]),
        [0, 50],
        [50, chunk],
        scale=0.25,
        window=32,
        pool_kernel=7,
        cached=[None, CachedKeys(row, num_tokens)],
        layer_cache=LayerCache(cache, DENSE),
    )
    assert chunked.lengths == [18, num_tokens - 32]
    torch.testing.assert_close(chunked.kv_scores[1], whole.kv_scores[0])
    alone = StepScores(other_query, other_keys, [0], [50], scale=0.25, window=32, pool_kernel=7)
    torch.testing.assert_close(chunked.kv_scores[0, :, :18], alone.kv_scores[0])


def test_held_tokens_from_a_block_aligned_offset_are_scored_alone():
    # After a selection a layer holds its kept tokens in the tail from a whole block on.
    from asl_vllm.scoring.kv_layout import DENSE
    from asl_vllm.scoring.step_scores import CachedKeys, LayerCache

    num_tokens, offset, chunk, block_size = 256, 96, 40, 16
    query, keys = _rows(num_tokens, seed=6)
    cache, row = _paged(keys, block_size, seed=7)
    tail = StepScores(query[offset:], keys[offset:], [0], [num_tokens - offset], 0.25, 32, 7)
    cached = StepScores(
        query[-chunk:],
        keys[-chunk:],
        [0],
        [chunk],
        0.25,
        32,
        7,
        cached=[CachedKeys(row[offset // block_size :], num_tokens - offset)],
        layer_cache=LayerCache(cache, DENSE),
    )
    torch.testing.assert_close(cached.kv_scores, tail.kv_scores)
