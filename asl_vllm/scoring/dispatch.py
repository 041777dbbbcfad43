"""One signature per batched scoring operation: Triton kernels on CUDA tensors, torch elsewhere.

Whether Triton can run is decided once per process (CUDA available and triton
importable); each call then goes by its tensors' device, so CPU tensors always
take the torch references of `asl_vllm.scoring.paged`. Contracts and layouts
are documented there.
"""

from __future__ import annotations

import functools
from types import ModuleType

import torch

from asl_vllm.scoring import paged
from asl_vllm.scoring.kv_layout import DENSE, KVLayout
from asl_vllm.scoring.paged import Lengths, batch_ranks, past_lengths

__all__ = [
    "compact_tail",
    "batch_rank_variance",
    "batch_ranks",
    "paged_window_histogram",
    "past_lengths",
    "pool_and_group",
    "triton_available",
]


@functools.cache
def triton_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _module(tensor: torch.Tensor, name: str) -> ModuleType:
    """The kernel module `name` for CUDA tensors when Triton runs, else the torch references."""
    if tensor.is_cuda and triton_available():
        import importlib

        return importlib.import_module(f"asl_vllm.kernels.{name}")
    return paged


def paged_window_histogram(
    q_win: torch.Tensor,
    k_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    layout: KVLayout = DENSE,
    k_scale: float = 1.0,
) -> torch.Tensor:
    """q_win[R, window, H, d], k_cache in `layout` -> hist[R, H, max M] fp32.

    A step's dense keys `[T, G, d]` are block-size-1 pages `[T, 1, G, d]` with
    `block_table[r, j] = row_start_r + j`; a layer's paged cache is read in its
    backend's layout, fp8 keys dequantized with `k_scale`. `seq_lens` on the host
    saves the launchers a device sync.
    """
    return _module(q_win, "window_scores").paged_window_histogram(
        q_win, k_cache, block_table, seq_lens, scale, layout, k_scale
    )


def pool_and_group(hist: torch.Tensor, lengths: Lengths, kernel: int, num_kv_heads: int) -> torch.Tensor:
    """hist[R, H, M] -> kv_scores[R, G, M] fp32 (ASL's token scores: `.sum(dim=1)`)."""
    return _module(hist, "score_reduce").pool_and_group(hist, lengths, kernel, num_kv_heads)


def batch_rank_variance(ranks: torch.Tensor, lengths: Lengths, tops: Lengths) -> torch.Tensor:
    """ranks[R, L, M] from `batch_ranks` -> rank variance per request [R] fp64."""
    return _module(ranks, "score_reduce").batch_rank_variance(ranks, lengths, tops)


def compact_tail(
    k_cache: torch.Tensor,
    v_cache: torch.Tensor | None,
    block_row: torch.Tensor,
    kept: torch.Tensor,
    end_slot: int,
    layout: KVLayout,
) -> None:
    _module(k_cache, "compaction").compact_tail(k_cache, v_cache, block_row, kept, end_slot, layout)
