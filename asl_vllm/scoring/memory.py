"""How much memory a pruning prefill needs on top of the model's own forward, for vLLM's memory profile.

vLLM sizes the KV cache from the peak of a profile run. Scoring and the layer
loop's own buffers exist only during a pruning prefill, so the profile must
reserve them explicitly, or the KV cache takes the memory a maximum-length
prompt later needs.
"""

from __future__ import annotations

import importlib

import torch

INT32, INT64, FP32 = 4, 8, 4


def scoring_transient_bytes(
    num_tokens: int,
    num_heads: int,
    num_kv_heads: int,
    head_size: int,
    window: int,
    obs_layers: int,
    dtype: torch.dtype,
    num_reqs: int = 1,
    use_triton: bool = True,
) -> int:
    """Upper bound on the bytes one pruning prefill step's scoring allocates beyond the captured q and k.

    The step scores `num_tokens` prompt tokens (at most
    max_num_batched_tokens) over `num_reqs` requests; batched tensors are
    padded to the longest request, bounded by `num_tokens`. Every term is
    counted as if alive at once: the window queries and the dense block
    table, the histogram (Triton: its split statistics; torch: one request's
    fp32 logits and softmax), the pooled scores, the batched ranks and their
    sort, the rank history of the last `obs_layers` layers and its stacked
    copy, and the per-KV-head selection. `use_triton` picks the path
    `asl_vllm.scoring.dispatch` takes (`triton_available()` on CUDA).
    """
    reqs, tokens, heads, kv_heads = num_reqs, num_tokens, num_heads, num_kv_heads
    padded = reqs * tokens
    element = torch.empty(0, dtype=dtype).element_size()
    inputs = reqs * window * heads * head_size * element + padded * INT32
    histogram = padded * heads * FP32 + (
        _split_stats_bytes(tokens, reqs, heads, kv_heads, head_size, window)
        if use_triton
        else _reference_histogram_bytes(tokens, heads, kv_heads, head_size, window, element)
    )
    pooled = padded * kv_heads * FP32 + padded * FP32 + (0 if use_triton else tokens * heads * FP32)
    # masked scores, argsort indices, radix double buffers (keys + values), ranks, validity mask
    ranks = padded * (FP32 + INT64 + 2 * (FP32 + INT64) + INT64 + 1)
    history = 2 * obs_layers * padded * INT64
    selection = padded * kv_heads * (INT64 + FP32)
    return inputs + histogram + pooled + ranks + history + selection


def _split_stats_bytes(tokens: int, reqs: int, heads: int, kv_heads: int, head_size: int, window: int) -> int:
    """The window kernel's per-split (max, normaliser) buffers, as its launcher sizes them."""
    kernel = importlib.import_module("asl_vllm.kernels.window_scores")
    plan = kernel.launch_plan(reqs, tokens, window, heads // kv_heads, kv_heads, head_size)
    return 2 * reqs * kv_heads * plan.chunks * plan.num_splits * plan.rows * FP32


def _reference_histogram_bytes(
    tokens: int, heads: int, kv_heads: int, head_size: int, window: int, element: int
) -> int:
    """The torch reference for one request of `tokens`: gathered keys, their fp32 copies, three logit tensors."""
    keys = tokens * kv_heads * head_size * (element + 2 * FP32)
    logits = 3 * heads * window * tokens * FP32 + window * tokens
    return keys + logits


def layer_loop_bytes(num_tokens: int, hidden_size: int, dtype: torch.dtype) -> int:
    """The layer loop's activations beyond what vLLM's forward holds for `num_tokens` rows.

    `LayerLoop.run` keeps the final hidden states for every row (scattered
    back at the end) and a copy of the input embeddings for a two-pass re-run,
    and the re-run gathers the selected rows' embeddings: three `T x hidden`
    tensors at most, alive through the whole loop.
    """
    element = torch.empty(0, dtype=dtype).element_size()
    return 3 * num_tokens * hidden_size * element
