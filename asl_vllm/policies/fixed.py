"""Fixed-layer peers: FastKV selects at one given layer; SnapKV never propagates."""

from __future__ import annotations

import torch


class FixedLayerPolicy:
    """FastKV (Jo et al., arXiv 2502.01068): token selection at a fixed layer, ASL's score."""

    def __init__(self, layer: int) -> None:
        self.layer = layer

    def wants_scores(self, layer: int) -> bool:
        return layer == self.layer

    def observe(self, layer: int, pooled: torch.Tensor) -> bool:
        return layer == self.layer


class NoSelectionPolicy:
    """SnapKV (Li et al., arXiv 2404.14469): no propagation, only the per-layer budget."""

    def wants_scores(self, layer: int) -> bool:
        return False

    def observe(self, layer: int, pooled: torch.Tensor) -> bool:
        return False
