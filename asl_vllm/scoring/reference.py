"""The scoring core, in plain torch: one place for the score, the rank and the selection rule.

Exactly the method of Taniguchi et al., "Adaptive Layer Selection for Layer-Wise
Token Pruning in LLM Inference" (arXiv 2601.07667), section 3, with SnapKV's
(arXiv 2404.14469) observation-window score. Shapes: w window queries, N tokens,
H query heads, G KV heads (GQA: query head h reads KV head h // (H // G)),
M = N - w past tokens. Ties always rank the lower token index first.
"""

from __future__ import annotations

from collections import deque

import torch
import torch.nn.functional as F


def window_histogram(q_win: torch.Tensor, keys: torch.Tensor, scale: float) -> torch.Tensor:
    """q_win[w, H, d] (the last w tokens' queries), keys[N, G, d] -> U[H, N - w] in fp32.

    Attention of each window query over all keys (causal inside the window,
    softmax in fp32), summed over the window rows, restricted to past tokens.
    """
    window, num_heads, _ = q_win.shape
    num_tokens, num_kv_heads, _ = keys.shape
    group = num_heads // num_kv_heads
    expanded = keys.float().repeat_interleave(group, dim=1)  # [N, H, d]
    logits = torch.einsum("whd,nhd->hwn", q_win.float(), expanded) * scale
    row_position = torch.arange(num_tokens - window, num_tokens).view(window, 1)
    future = torch.arange(num_tokens).view(1, num_tokens) > row_position
    logits = logits.masked_fill(future, float("-inf"))
    return torch.softmax(logits, dim=-1).sum(dim=1)[:, : num_tokens - window]


def pool_scores(hist: torch.Tensor, kernel: int) -> torch.Tensor:
    """AvgPool1D(kernel, stride 1, padding kernel // 2) per head; padding counts as zeros, as in SnapKV."""
    if hist.shape[-1] == 0:
        return hist
    return F.avg_pool1d(hist.unsqueeze(0), kernel_size=kernel, stride=1, padding=kernel // 2).squeeze(0)


def kv_head_scores(pooled: torch.Tensor, num_kv_heads: int) -> torch.Tensor:
    """pooled[H, M] -> [G, M]: each KV head's score is the sum over its query heads."""
    num_heads, length = pooled.shape
    return pooled.view(num_kv_heads, num_heads // num_kv_heads, length).sum(dim=1)


def token_scores(pooled: torch.Tensor) -> torch.Tensor:
    """pooled[H, M] -> [M]: one score per token, summed over every query head."""
    return pooled.sum(dim=0)


def descending_order(scores: torch.Tensor) -> torch.Tensor:
    """Token indices from highest score to lowest; equal scores keep index order."""
    return torch.argsort(scores, descending=True, stable=True)


def descending_ranks(scores: torch.Tensor) -> torch.Tensor:
    """1-based ranks, rank 1 = highest score; always a permutation of 1..M."""
    ranks = torch.empty(scores.shape[-1], dtype=torch.long)
    ranks[descending_order(scores)] = torch.arange(1, scores.shape[-1] + 1)
    return ranks


def rank_variance(ranks: torch.Tensor, top: int) -> float:
    """ranks[L, M]: mean over layers and over I of (R[l, i] - mean_l R[., i])^2.

    I is the union over layers of the tokens ranked within `top`: the variance
    is measured where selection happens. 0.0 when I is empty (top < 1 or M = 0).
    """
    selected = (ranks <= top).any(dim=0)
    if not bool(selected.any()):
        return 0.0
    sub = ranks[:, selected].double()
    return float(((sub - sub.mean(dim=0, keepdim=True)) ** 2).mean())


class AdaptiveLayerRule:
    """The selection-layer decision of one request, fed one layer's ranks at a time.

    Layers `min_layer - obs_layers + 1 .. min_layer` fill the history; v(min_layer)
    is the reference. From `min_layer + 1` on, the layer s with
    v(s) / v(min_layer) < tau is the selection layer. A zero reference means the
    ranks did not move at all over the observed layers: the first layer after it
    is selected.
    """

    def __init__(self, min_layer: int, obs_layers: int, tau: float, top: int) -> None:
        self.min_layer = min_layer
        self.obs_layers = obs_layers
        self.tau = tau
        self.top = top
        self.history: deque[torch.Tensor] = deque(maxlen=obs_layers)
        self.reference: float | None = None
        self.variances: dict[int, float] = {}

    @property
    def first_observed_layer(self) -> int:
        return self.min_layer - self.obs_layers + 1

    def observe(self, layer: int, ranks: torch.Tensor) -> bool:
        """True when `layer` is the selection layer."""
        self.history.append(ranks)
        if layer < self.min_layer:
            return False
        variance = rank_variance(torch.stack(list(self.history)), self.top)
        self.variances[layer] = variance
        if layer == self.min_layer:
            self.reference = variance
            return False
        assert self.reference is not None, "layers must be observed in order from first_observed_layer"
        if self.reference == 0.0:
            return True
        return variance / self.reference < self.tau


def select_tokens(scores: torch.Tensor, num_tokens: int, keep: int, window: int) -> torch.Tensor:
    """Sorted indices of the kept tokens: the top (keep - w) past tokens plus the w window tokens."""
    if keep >= num_tokens:
        return torch.arange(num_tokens)
    window = min(window, num_tokens)
    top = descending_order(scores)[: max(keep - window, 0)]
    kept = torch.cat([top, torch.arange(num_tokens - window, num_tokens)])
    return torch.sort(kept).values


def snapkv_select(kv_scores: torch.Tensor, num_tokens: int, keep: int, window: int) -> torch.Tensor:
    """kv_scores[G, M] -> [G, min(keep, N)]: per KV head, its top past tokens plus the window, sorted."""
    return torch.stack([select_tokens(row, num_tokens, keep, window) for row in kv_scores])
