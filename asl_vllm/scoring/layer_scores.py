"""One request's token scores at one layer, each computed on first use.

The engine hands a policy this object instead of a score: ASL and FastKV rank
by the pooled window attention, GemFilter by the last query's raw QK^T, and a
per-layer budget always needs the pooled scores. Only what is asked for is
computed.
"""

from __future__ import annotations

from functools import cached_property

import torch

from asl_vllm.scoring.dispatch import window_histogram
from asl_vllm.scoring.reference import gemfilter_scores, pool_scores


class LayerScores:
    def __init__(self, query: torch.Tensor, keys: torch.Tensor, scale: float, window: int, pool_kernel: int) -> None:
        """query[N, H, d] and keys[N, G, d] of one request's N rows at this layer (RoPE applied)."""
        self.query = query
        self.keys = keys
        self.scale = scale
        self.window = min(window, keys.shape[0])
        self.pool_kernel = pool_kernel

    @property
    def num_tokens(self) -> int:
        return self.keys.shape[0]

    @cached_property
    def pooled(self) -> torch.Tensor:
        """[H, N - w]: SnapKV/ASL window histogram, average-pooled per query head."""
        histogram = window_histogram(self.query[-self.window :], self.keys, self.scale)
        return pool_scores(histogram, self.pool_kernel)

    @cached_property
    def gemfilter(self) -> torch.Tensor:
        """[N - w]: GemFilter's last-query inner products, summed over heads and pooled."""
        return gemfilter_scores(self.query[-1], self.keys, self.window)
