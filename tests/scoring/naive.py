"""Naive loop versions of the scoring core, written from the method's text, in fp64 Python floats.

Deliberately nothing shared with `asl_vllm.scoring.reference`: no torch ops
beyond reading values, no vectorisation, one formula per line.
"""

from __future__ import annotations

import math

import torch


def window_histogram(q_win: torch.Tensor, keys: torch.Tensor, scale: float) -> list[list[float]]:
    """U[h][j] = sum over window rows i of softmax_j(q_i . k_j * scale) over keys j <= N - w + i."""
    q = q_win.double().tolist()
    k = keys.double().tolist()
    window, num_heads = len(q), len(q[0]) if q else 0
    num_tokens, num_kv_heads = len(k), len(k[0])
    group = num_heads // num_kv_heads
    out = [[0.0] * (num_tokens - window) for _ in range(num_heads)]
    for h in range(num_heads):
        for i in range(window):
            position = num_tokens - window + i
            logits = [
                sum(a * b for a, b in zip(q[i][h], k[j][h // group], strict=True)) * scale for j in range(position + 1)
            ]
            top = max(logits)
            weights = [math.exp(x - top) for x in logits]
            total = sum(weights)
            for j in range(num_tokens - window):
                out[h][j] += weights[j] / total
    return out


def pool(hist: list[list[float]], kernel: int) -> list[list[float]]:
    """Mean over the `kernel` neighbours centred on each token, missing neighbours counted as 0."""
    half = kernel // 2
    return [
        [sum(row[j] for j in range(i - half, i + half + 1) if 0 <= j < len(row)) / kernel for i in range(len(row))]
        for row in hist
    ]


def kv_head_scores(pooled: list[list[float]], num_kv_heads: int) -> list[list[float]]:
    group = len(pooled) // num_kv_heads
    return [
        [sum(pooled[g * group + m][i] for m in range(group)) for i in range(len(pooled[0]))]
        for g in range(num_kv_heads)
    ]


def token_scores(pooled: list[list[float]]) -> list[float]:
    return [sum(row[i] for row in pooled) for i in range(len(pooled[0]))] if pooled else []


def ranks(scores: list[float]) -> list[int]:
    """1 + the number of tokens that beat token i: a higher score, or the same score and a lower index."""
    return [1 + sum(1 for j, t in enumerate(scores) if t > s or (t == s and j < i)) for i, s in enumerate(scores)]


def rank_variance(rank_rows: list[list[int]], top: int) -> float:
    layers = len(rank_rows)
    chosen = [i for i in range(len(rank_rows[0])) if any(row[i] <= top for row in rank_rows)]
    if not chosen:
        return 0.0
    total = 0.0
    for i in chosen:
        mean = sum(row[i] for row in rank_rows) / layers
        total += sum((row[i] - mean) ** 2 for row in rank_rows)
    return total / (layers * len(chosen))


def selection_layer(
    rank_rows_by_layer: list[list[int]], min_layer: int, obs_layers: int, tau: float, top: int
) -> int | None:
    """The first layer s > min_layer with v(s) / v(min_layer) < tau, over all layers' ranks at once."""

    def variance(layer: int) -> float:
        return rank_variance(rank_rows_by_layer[layer - obs_layers + 1 : layer + 1], top)

    reference = variance(min_layer)
    for layer in range(min_layer + 1, len(rank_rows_by_layer)):
        if reference == 0.0 or variance(layer) / reference < tau:
            return layer
    return None


def select_tokens(scores: list[float], num_tokens: int, keep: int, window: int) -> list[int]:
    if keep >= num_tokens:
        return list(range(num_tokens))
    window = min(window, num_tokens)
    best_first = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return sorted(best_first[: keep - window] + list(range(num_tokens - window, num_tokens)))


def gemfilter_scores(q_last: torch.Tensor, keys: torch.Tensor, window: int, kernel: int) -> list[float]:
    """sum over heads h of q_h . k_j (raw), pooled over all N tokens, past tokens only."""
    q = q_last.double().tolist()
    k = keys.double().tolist()
    group = len(q) // len(k[0])
    inner = [
        sum(sum(a * b for a, b in zip(q[h], k[j][h // group], strict=True)) for h in range(len(q)))
        for j in range(len(k))
    ]
    return pool([inner], kernel)[0][: len(k) - min(window, len(k))]
