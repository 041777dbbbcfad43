"""Fixed-layer peers: FastKV and GemFilter select at one given layer; SnapKV never selects."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from asl_vllm.scoring.step_scores import StepScores


class FixedLayerPolicy:
    """FastKV (Jo et al., arXiv 2502.01068): token selection at a fixed layer, ASL's score, propagated."""

    two_pass = False

    def __init__(self, layer: int) -> None:
        self.layer = layer

    def wants_scores(self, layer: int) -> bool:
        return layer == self.layer

    @classmethod
    def observe_all(
        cls, layer: int, policies: Sequence[FixedLayerPolicy], scores: StepScores, rows: Sequence[int]
    ) -> list[bool]:
        return [layer == policy.layer for policy in policies]

    def token_scores(self, scores: StepScores, row: int) -> torch.Tensor:
        return scores.token_scores[row, : scores.lengths[row]]


class GemFilterPolicy(FixedLayerPolicy):
    """GemFilter (Shi et al., arXiv 2409.17422): the last query's raw QK^T at a fixed filter layer,
    then the whole model re-runs on the selected tokens with fresh positions."""

    two_pass = True

    def token_scores(self, scores: StepScores, row: int) -> torch.Tensor:
        return scores.gemfilter(row)


class NoSelectionPolicy:
    """SnapKV (Li et al., arXiv 2404.14469): no propagation, only the per-layer budget."""

    two_pass = False

    def wants_scores(self, layer: int) -> bool:
        return False

    @classmethod
    def observe_all(
        cls, layer: int, policies: Sequence[NoSelectionPolicy], scores: StepScores, rows: Sequence[int]
    ) -> list[bool]:
        return [False] * len(policies)

    def token_scores(self, scores: StepScores, row: int) -> torch.Tensor:
        return scores.token_scores[row, : scores.lengths[row]]
