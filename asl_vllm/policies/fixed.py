"""Fixed-layer peers: FastKV and GemFilter select at one given layer; SnapKV never selects."""

from __future__ import annotations

import torch

from asl_vllm.scoring import reference
from asl_vllm.scoring.layer_scores import LayerScores


class FixedLayerPolicy:
    """FastKV (Jo et al., arXiv 2502.01068): token selection at a fixed layer, ASL's score, propagated."""

    two_pass = False

    def __init__(self, layer: int) -> None:
        self.layer = layer

    def wants_scores(self, layer: int) -> bool:
        return layer == self.layer

    def observe(self, layer: int, scores: LayerScores) -> bool:
        return layer == self.layer

    def token_scores(self, scores: LayerScores) -> torch.Tensor:
        return reference.token_scores(scores.pooled)


class GemFilterPolicy(FixedLayerPolicy):
    """GemFilter (Shi et al., arXiv 2409.17422): the last query's raw QK^T at a fixed filter layer,
    then the whole model re-runs on the selected tokens with fresh positions."""

    two_pass = True

    def token_scores(self, scores: LayerScores) -> torch.Tensor:
        return scores.gemfilter


class NoSelectionPolicy:
    """SnapKV (Li et al., arXiv 2404.14469): no propagation, only the per-layer budget."""

    two_pass = False

    def wants_scores(self, layer: int) -> bool:
        return False

    def observe(self, layer: int, scores: LayerScores) -> bool:
        return False

    def token_scores(self, scores: LayerScores) -> torch.Tensor:
        return reference.token_scores(scores.pooled)
