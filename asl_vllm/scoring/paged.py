"""Torch references of the batched, paged operations: `reference`'s math on vLLM's paged KV.

The Triton kernels in `asl_vllm.kernels` have the same contracts and are tested
against these. Layouts:
- `k_cache`/`v_cache[num_blocks, block_size, G, d]`: any strided view, or, with
  a backend's `layout` (`asl_vllm.scoring.kv_layout`), `k_cache` is a layer's
  whole vLLM cache tensor and the K/V views are taken the way that backend
  splits it (CPU `amx` tiles as `TiledPages`, indexed alike); fp8 keys are
  dequantized with the layer's `k_scale`;
- `block_table[R, max_blocks]` int32: slot s of request r is
  `cache[block_table[r, s // block_size], s % block_size]`;
- `seq_lens[R]` int32: N_r; w_r = min(window, N_r); M_r = N_r - w_r past tokens;
- `q_win[R, window, H, d]`: row i of request r is the query of position
  N_r - w_r + i; rows i >= w_r are padding and never read;
- padded batches `[R, ..., max_r M_r]`: request r fills columns [0, M_r) and
  holds zeros (ranks: 0) after them; `lengths[R]` gives M_r.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from asl_vllm.scoring.kv_layout import DENSE, KVLayout, Pages, as_bits, key_view, kv_pair
from asl_vllm.scoring.reference import (
    descending_order,
    kv_head_scores,
    pool_scores,
    rank_variance,
    window_histogram,
)

Lengths = torch.Tensor | Sequence[int]


def as_list(lengths: Lengths) -> list[int]:
    return [int(n) for n in (lengths.tolist() if isinstance(lengths, torch.Tensor) else lengths)]


def past_lengths(seq_lens: torch.Tensor, window: int) -> torch.Tensor:
    """seq_lens[R] -> M[R] = N - min(window, N), the past tokens each request scores (on the same device)."""
    return seq_lens - seq_lens.clamp(max=window)


def slot_index(cache: Pages, block_row: torch.Tensor, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(block, offset) of each slot of one request, for indexing `cache[block, offset]`."""
    block_size = cache.shape[1]
    slots = slots.to(cache.device).long()
    return block_row.to(cache.device).long()[slots // block_size], slots % block_size


def gather_tokens(cache: Pages, block_row: torch.Tensor, first: int, count: int) -> torch.Tensor:
    """cache[num_blocks, block_size, G, d] -> tokens [count, G, d] of slots first .. first + count - 1.

    Whole pages are copied and the range cut from them: a per-token index into a tiled or transposed
    view costs several times the copy (a prompt's keys are read at every scored layer).
    """
    block_size = cache.shape[1]
    first_block, end_block = first // block_size, -(-(first + count) // block_size)
    if count > 0 and end_block > len(block_row):
        raise IndexError(f"slots up to {first + count - 1} need {end_block} blocks; the row holds {len(block_row)}")
    pages = cache[block_row[first_block:end_block].to(cache.device).long()]
    start = first - first_block * block_size
    return pages.flatten(0, 1)[start : start + count]


def paged_window_histogram(
    q_win: torch.Tensor,
    k_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    layout: KVLayout = DENSE,
    k_scale: float = 1.0,
) -> torch.Tensor:
    """-> hist[R, H, max_r M_r] fp32: `reference.window_histogram` of each request, window = q_win.shape[1]."""
    k_cache = key_view(k_cache, layout)
    num_reqs, window, num_heads, _ = q_win.shape
    lengths = as_list(seq_lens)
    width = max((n - min(window, n) for n in lengths), default=0)
    out = torch.zeros(num_reqs, num_heads, width, dtype=torch.float32, device=q_win.device)
    for r, num_tokens in enumerate(lengths):
        w = min(window, num_tokens)
        if num_tokens > w:
            keys = gather_tokens(k_cache, block_table[r], 0, num_tokens).float()
            if k_scale != 1.0:
                keys.mul_(k_scale)
            out[r, :, : num_tokens - w] = window_histogram(q_win[r, :w], keys, scale)
    return out


def pool_and_group(hist: torch.Tensor, lengths: Lengths, kernel: int, num_kv_heads: int) -> torch.Tensor:
    """hist[R, H, M] -> kv_scores[R, G, M] fp32: pooled per query head, summed per KV head.

    SnapKV uses these per KV head; ASL's token scores are `kv_scores.sum(dim=1)`
    (the sum over all query heads, grouped first).
    """
    num_reqs, _, width = hist.shape
    out = torch.zeros(num_reqs, num_kv_heads, width, dtype=torch.float32, device=hist.device)
    for r, length in enumerate(as_list(lengths)):
        out[r, :, :length] = kv_head_scores(pool_scores(hist[r, :, :length], kernel), num_kv_heads)
    return out


def batch_ranks(scores: torch.Tensor, lengths: Lengths) -> torch.Tensor:
    """scores[R, M] -> ranks[R, M] int64: 1-based descending ranks of the first M_r columns, 0 after.

    One stable sort for the whole batch: padding is set to -inf, which sorts
    after every real score, so each request's ranks equal `descending_ranks`
    of its own columns (scores are sums of probabilities: never -inf or NaN).
    """
    num_reqs, width = scores.shape
    lengths = torch.as_tensor(as_list(lengths), device=scores.device).view(num_reqs, 1)
    columns = torch.arange(width, device=scores.device).view(1, width)
    valid = columns < lengths
    order = descending_order(scores.float().masked_fill(~valid, float("-inf")))
    ranks = torch.empty(num_reqs, width, dtype=torch.long, device=scores.device)
    ranks.scatter_(1, order, (columns + 1).expand(num_reqs, width))
    return ranks.masked_fill_(~valid, 0)


def batch_rank_variance(ranks: torch.Tensor, lengths: Lengths, tops: Lengths) -> torch.Tensor:
    """ranks[R, L, M] (each request's last L layers) -> `reference.rank_variance` per request, [R] fp64."""
    values = [
        rank_variance(ranks[r, :, :length].cpu(), top)
        for r, (length, top) in enumerate(zip(as_list(lengths), as_list(tops), strict=True))
    ]
    return torch.tensor(values, dtype=torch.float64, device=ranks.device)


def check_compaction(kept: torch.Tensor, end_slot: int) -> None:
    """Each row strictly ascending and below end_slot: what makes the in-place move safe (see `compact_tail`)."""
    if kept.dim() != 2 or kept.shape[1] > end_slot:
        raise ValueError(f"kept must be [G, K <= {end_slot}], got {tuple(kept.shape)}")
    if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= end_slot or bool((kept.diff(dim=1) <= 0).any())):
        raise ValueError(f"kept rows must be strictly ascending slots in [0, {end_slot})")


def compact_tail(
    k_cache: torch.Tensor,
    v_cache: torch.Tensor | None,
    block_row: torch.Tensor,
    kept: torch.Tensor,
    end_slot: int,
    layout: KVLayout = DENSE,
) -> None:
    """In place, one request and one layer: per KV head g, slot kept[g, j] moves to slot end_slot - K + j.

    DENSE: `k_cache` and `v_cache` are the K and V views; a backend's layout:
    `k_cache` is the layer's cache tensor and `v_cache` None.

    `kept[G, K]` holds slots of the request (rows strictly ascending, < end_slot);
    they land in the tail [end_slot - K, end_slot) in their original order.
    Overlap is safe: K - 1 - j kept slots follow kept[g, j], all below
    end_slot, so kept[g, j] <= end_slot - K + j: every token moves towards the
    tail or stays, and the slot written for j was either never a source or
    is the source of some j' > j, already moved when walking j downwards.
    """
    check_compaction(kept, end_slot)
    k_cache, v_cache = (as_bits(view) for view in kv_pair(k_cache, v_cache, layout))
    first = end_slot - kept.shape[1]
    destination = slot_index(k_cache, block_row, torch.arange(first, end_slot))
    heads = torch.arange(kept.shape[0], device=k_cache.device).view(-1, 1)
    for cache in (k_cache, v_cache):
        blocks, offsets = slot_index(cache, block_row, kept)  # [G, K] each
        moved = cache[blocks, offsets, heads]  # [G, K, d], a copy: sources are read before any write
        cache[destination[0].view(1, -1), destination[1].view(1, -1), heads] = moved
