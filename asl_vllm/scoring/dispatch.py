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

from asl_vllm.scoring import paged, reference
from asl_vllm.scoring.kv_layout import DENSE, KVLayout
from asl_vllm.scoring.paged import Lengths, batch_ranks, past_lengths

__all__ = [
    "batch_rank_variance",
    "batch_ranks",
    "compact_tail",
    "paged_window_histogram",
    "past_lengths",
    "pool_and_group",
    "triton_available",
    "window_histogram",
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
    """q_win[R, window, H, d], K [blocks, block_size, G, d] -> hist[R, H, max M] fp32.

    DENSE: `k_cache` is the K view itself (a step's dense keys [T, G, d] are
    `keys.view(T, 1, G, d)` with `block_table[r, j] = row_start_r + j`); a
    backend's layout: `k_cache` is the layer's vLLM cache tensor and
    `k_scale` its per-tensor fp8 scale (`layer._k_scale_float`).
    """
    module = _module(q_win, "window_scores")
    return module.paged_window_histogram(q_win, k_cache, block_table, seq_lens, scale, layout, k_scale)


def window_histogram(q_win: torch.Tensor, keys: torch.Tensor, scale: float) -> torch.Tensor:
    """Dense `reference.window_histogram` (q_win[w, H, d], keys[N, G, d] -> [H, N - w]) on either path.

    Dense keys are a paged cache of one block of N slots, so CUDA tensors take
    the paged kernel with a one-entry block table; elsewhere the reference runs
    on the keys as they are (no gather through a table).
    """
    if _module(keys, "window_scores") is paged:
        return reference.window_histogram(q_win, keys, scale)
    num_tokens = keys.shape[0]
    table = torch.zeros(1, 1, dtype=torch.int32, device=keys.device)
    seq_lens = torch.tensor([num_tokens], dtype=torch.int32, device=keys.device)
    return paged_window_histogram(q_win.unsqueeze(0), keys.unsqueeze(0), table, seq_lens, scale)[0]


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
    layout: KVLayout = DENSE,
) -> None:
    """In place: per KV head, kept[g] slots (ascending) move to slots [end_slot - K, end_slot).

    DENSE: K and V views; a backend's layout: the layer's cache tensor as `k_cache`, `v_cache` None.
    """
    _module(k_cache, "compaction").compact_tail(k_cache, v_cache, block_row, kept, end_slot, layout)
