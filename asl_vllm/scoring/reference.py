"""The scoring core, in plain torch: one place for the score, the rank and the selection rule.

Exactly the method of Taniguchi et al., "Adaptive Layer Selection for Layer-Wise
Token Pruning in LLM Inference" (arXiv 2601.07667), section 3, with SnapKV's
(arXiv 2404.14469) observation-window score, as the reference code
(github TANIGUCHIREI/ASL, `baseline/asl/customized_cache.py`) computes it.
Shapes: w window queries, N tokens, H query heads, G KV heads (GQA: query head h
reads KV head h // (H // G)), M = N - w past tokens. Layers are 0-based, as the
reference's `layer_idx` and its L_min (`default_select_layer`) are.

Where the reference leaves a case undefined (a crash, or an unstable sort), the
choice made here is stated in the docstring that owns it:
- ties in scores rank the lower token index first (the reference's
  `torch.argsort`/`topk` are unstable there);
- N <= w gives an empty past (the reference fails on a prompt shorter than w);
- a zero reference variance selects the first layer after L_min (the reference
  divides by zero).
"""

from __future__ import annotations

from collections import deque

import torch
import torch.nn.functional as F

# GemFilter's `standard_dis_index` pools its scores with AvgPool1D(5) by default.
GEMFILTER_KERNEL = 5


def _check_attention_shapes(queries: torch.Tensor, keys: torch.Tensor) -> None:
    if keys.dim() != 3 or queries.shape[-1] != keys.shape[-1]:
        raise ValueError(f"keys must be [N, G, d] with the queries' d; got {tuple(keys.shape)}")
    num_heads, num_kv_heads = queries.shape[-2], keys.shape[1]
    if num_kv_heads == 0 or num_heads % num_kv_heads:
        raise ValueError(f"{num_heads} query heads do not split into {num_kv_heads} KV-head groups")


def window_histogram(q_win: torch.Tensor, keys: torch.Tensor, scale: float) -> torch.Tensor:
    """q_win[w, H, d] (queries of the last w tokens), keys[N, G, d] -> U[H, N - w] in fp32.

    Row i of the window is position N - w + i and sees keys 0 .. N - w + i
    (causal inside the window, as the prefill attention itself). Its softmax
    over those keys, in fp32, summed over the w rows and kept only for the
    N - w past keys, is how much the prompt's end attends to each older token.
    """
    if q_win.dim() != 3:
        raise ValueError(f"q_win must be [w, H, d], got {tuple(q_win.shape)}")
    _check_attention_shapes(q_win, keys)
    window, num_heads, dim = q_win.shape
    num_tokens, num_kv_heads, _ = keys.shape
    if window > num_tokens:
        raise ValueError(f"window {window} exceeds the {num_tokens} tokens; pass w = min(window, N)")
    group = num_heads // num_kv_heads
    # [G, group * w, d] @ [G, d, N]: each KV head's keys are read once for all the query heads that share them.
    grouped = q_win.float().view(window, num_kv_heads, group, dim).permute(1, 2, 0, 3).reshape(num_kv_heads, -1, dim)
    logits = torch.bmm(grouped, keys.float().permute(1, 2, 0)).mul_(scale).view(num_heads, window, num_tokens)
    future = torch.ones(window, window, dtype=torch.bool, device=keys.device).triu_(1)
    logits[:, :, num_tokens - window :].masked_fill_(future, float("-inf"))
    return torch.softmax(logits, dim=-1).sum(dim=1)[:, : num_tokens - window]


def pool_scores(hist: torch.Tensor, kernel: int) -> torch.Tensor:
    """hist[H, M] -> [H, M]: AvgPool1D(kernel, stride 1, padding kernel // 2) per head.

    Padding counts as zeros in the mean (`count_include_pad=True`, torch's
    default, which SnapKV and the ASL reference use): an edge token averages
    over fewer real neighbours but still divides by `kernel`. Smoothing makes a
    token's neighbours count, so the span around an attended token survives.
    The kernel must be odd for the output to keep length M.
    """
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"pool kernel must be odd and positive, got {kernel}")
    if hist.shape[-1] == 0:
        return hist.float()
    return F.avg_pool1d(hist.float().unsqueeze(0), kernel_size=kernel, stride=1, padding=kernel // 2).squeeze(0)


def kv_head_scores(pooled: torch.Tensor, num_kv_heads: int) -> torch.Tensor:
    """pooled[H, M] -> [G, M]: a KV head's score is the sum over the query heads that read it."""
    num_heads, length = pooled.shape
    if num_kv_heads < 1 or num_heads % num_kv_heads:
        raise ValueError(f"{num_heads} query heads do not split into {num_kv_heads} KV-head groups")
    return pooled.view(num_kv_heads, num_heads // num_kv_heads, length).sum(dim=1)


def token_scores(pooled: torch.Tensor) -> torch.Tensor:
    """pooled[H, M] -> [M]: ASL's one score per token, summed over every query head."""
    return pooled.sum(dim=0)


def descending_order(scores: torch.Tensor) -> torch.Tensor:
    """Token indices from highest score to lowest; equal scores keep index order (stable sort)."""
    return torch.argsort(scores, descending=True, stable=True)


def descending_ranks(scores: torch.Tensor) -> torch.Tensor:
    """scores[M] -> LongTensor[M] of 1-based ranks, rank 1 = highest; always a permutation of 1..M."""
    length = scores.shape[-1]
    ranks = torch.empty(length, dtype=torch.long, device=scores.device)
    ranks[descending_order(scores)] = torch.arange(1, length + 1, device=scores.device)
    return ranks


def rank_variance(ranks: torch.Tensor, top: int) -> float:
    """ranks[L, M] -> mean over layers l and over i in I of (R[l, i] - mean_l R[., i])^2.

    I is the union over the L layers of the tokens ranked within `top`: the
    variance is measured where selection happens (the reference's
    `torch.unique(topk(ranks, k))`). Population variance, in fp64.
    Edge cases: top >= M puts every token in I (the reference clamps k to M);
    I empty (top < 1 or M = 0) gives 0.0; L = 1 gives 0.0.
    """
    if ranks.dim() != 2 or ranks.shape[0] == 0:
        raise ValueError(f"ranks must be [L >= 1, M], got {tuple(ranks.shape)}")
    # Clamped to [0, M]: a `top` beyond int64 would overflow the comparison.
    selected = (ranks <= min(max(top, 0), ranks.shape[1])).any(dim=0)
    if not bool(selected.any()):
        return 0.0
    sub = ranks[:, selected].double()
    return float(((sub - sub.mean(dim=0, keepdim=True)) ** 2).mean())


class AdaptiveLayerRule:
    """The selection-layer decision of one request, fed one layer's ranks at a time.

    `observe` is called for consecutive layers from `first_observed_layer` =
    min_layer - obs_layers + 1 on; the last `obs_layers` rank vectors are kept.
    At min_layer, v(min_layer) becomes the reference (its ratio is 1 by
    definition, so min_layer itself is never selected, even for tau > 1). The
    first later layer s with v(s) / v(min_layer) < tau is the selection layer.
    A zero reference means the observed ranks did not move at all: they have
    already settled, so the first layer after min_layer is selected (the
    reference code would divide by zero). `variances` maps layer -> v(layer)
    for logging.
    """

    def __init__(self, min_layer: int, obs_layers: int, tau: float, top: int) -> None:
        if obs_layers < 1 or min_layer - obs_layers + 1 < 0:
            raise ValueError(f"need 1 <= obs_layers <= min_layer + 1, got {obs_layers=} {min_layer=}")
        self.min_layer = min_layer
        self.obs_layers = obs_layers
        self.tau = tau
        self.top = top
        self.history: deque[torch.Tensor] = deque(maxlen=obs_layers)
        self.reference: float | None = None
        self.variances: dict[int, float] = {}
        self.selected_layer: int | None = None
        self._next_layer = self.first_observed_layer

    @property
    def first_observed_layer(self) -> int:
        return self.min_layer - self.obs_layers + 1

    def observe(self, layer: int, ranks: torch.Tensor) -> bool:
        """Feed `layer`'s ranks[M]; True when `layer` is the selection layer."""
        if not self.push(layer, ranks):
            return False
        return self.decide(layer, rank_variance(torch.stack(list(self.history)), self.top))

    def push(self, layer: int, ranks: torch.Tensor) -> bool:
        """Keep `layer`'s ranks[M]; True when `layer` >= min_layer, whose variance `decide` needs."""
        if self.selected_layer is not None:
            raise RuntimeError(f"selection layer already chosen ({self.selected_layer})")
        if layer != self._next_layer:
            raise ValueError(f"expected layer {self._next_layer}, got {layer}: observe consecutive layers")
        self._next_layer += 1
        self.history.append(ranks)
        return layer >= self.min_layer

    def decide(self, layer: int, variance: float) -> bool:
        """With v(layer), the rank variance of the kept history: True when `layer` is the selection layer."""
        self.variances[layer] = variance
        if layer == self.min_layer:
            self.reference = variance
            return False
        assert self.reference is not None
        if self.reference == 0.0 or variance / self.reference < self.tau:
            self.selected_layer = layer
            return True
        return False


def select_tokens(scores: torch.Tensor, num_tokens: int, keep: int, window: int) -> torch.Tensor:
    """scores[M] of the past tokens -> ascending indices of the kept tokens.

    The top (keep - w) past tokens by score (ties: lower index), plus the last
    w = min(window, N) tokens, which the next token attends to most and which
    hold the question. keep >= N keeps everything; keep < w is refused, since
    the window is always kept.
    """
    window = min(window, num_tokens)
    if scores.shape != (num_tokens - window,):
        raise ValueError(f"scores must be [N - w] = [{num_tokens - window}], got {tuple(scores.shape)}")
    if keep >= num_tokens:
        return torch.arange(num_tokens, device=scores.device)
    if keep < window:
        raise ValueError(f"keep ({keep}) is below the window ({window}), which is always kept")
    top = descending_order(scores)[: keep - window]
    kept = torch.cat([top, torch.arange(num_tokens - window, num_tokens, device=scores.device)])
    return torch.sort(kept).values


def snapkv_select(kv_scores: torch.Tensor, num_tokens: int, keep: int, window: int) -> torch.Tensor:
    """kv_scores[G, M] -> LongTensor[G, min(keep, N)]: per KV head its own `select_tokens`, sorted."""
    if kv_scores.dim() != 2:
        raise ValueError(f"kv_scores must be [G, M], got {tuple(kv_scores.shape)}")
    return torch.stack([select_tokens(row, num_tokens, keep, window) for row in kv_scores])


def budget_select(scores: torch.Tensor, num_tokens: int, keep: int, window: int, num_kv_heads: int) -> torch.Tensor:
    """The budget rule: -> LongTensor[G, min(keep, N)], the tokens each of the G KV heads keeps.

    scores[G, M], one row per KV head: SnapKV's rule, each KV head its own top
    tokens by the scores of the query heads that read it. scores[M]: one set
    for all KV heads, ranked by ASL's token score (the sum over every head), so
    a span that one head group attends to survives in all of them.
    """
    if scores.dim() == 2:
        return snapkv_select(scores, num_tokens, keep, window)
    kept = select_tokens(scores, num_tokens, keep, window)
    return kept.view(1, -1).expand(num_kv_heads, -1)


def layer_shares(scores: torch.Tensor) -> torch.Tensor:
    """scores[..., M] -> each row as shares of its own total, in fp32.

    A layer-shared budget (`--kv-budget-layers shared`) ranks tokens by the sum
    over layers of these shares: each layer counts alike, however peaked or flat
    its attention is, so a span that the retrieval layers attend to survives in
    the early layers whose attention is spread over local context.
    """
    scores = scores.float()
    return scores / scores.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)


def layer_shared_scores(per_layer: list[torch.Tensor]) -> torch.Tensor:
    """Per layer scores[..., M] of the same M past tokens -> [..., M]: what a layer-shared budget ranks by."""
    if not per_layer:
        raise ValueError("a layer-shared budget needs at least one layer's scores")
    total = torch.zeros(per_layer[0].shape, dtype=torch.float32, device=per_layer[0].device)
    for scores in per_layer:  # layer by layer, in the order the engine adds them
        total += layer_shares(scores)
    return total


def gemfilter_scores(
    q_last: torch.Tensor, keys: torch.Tensor, window: int, kernel: int = GEMFILTER_KERNEL
) -> torch.Tensor:
    """q_last[H, d] (the last token's query), keys[N, G, d] -> scores[N - w] of the past tokens.

    GemFilter (Shi et al., arXiv 2409.17422; `standard_dis_index` in the ASL
    reference): raw inner products q_last . k_j, no softmax, summed over the
    query heads, then AvgPool1D(kernel 5) over all N tokens. No 1/sqrt(d): a
    positive scale cannot change the ranking. GemFilter ranks all N tokens;
    here the window is always kept (as every pruner here does, so the last
    token survives), so only the past N - w scores are returned, for
    `select_tokens`.
    """
    if q_last.dim() != 2:
        raise ValueError(f"q_last must be [H, d], got {tuple(q_last.shape)}")
    _check_attention_shapes(q_last, keys)
    num_tokens, num_kv_heads, _ = keys.shape
    grouped = q_last.float().view(num_kv_heads, -1, q_last.shape[-1]).sum(dim=1)  # [G, d]
    inner = torch.einsum("gd,ngd->n", grouped, keys.float())  # [N]: sum over heads of q_h . k_j
    return pool_scores(inner.unsqueeze(0), kernel)[0, : num_tokens - min(window, num_tokens)]
