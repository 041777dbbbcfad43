"""FastKV (Jo et al., arXiv 2502.01068): token selection at a fixed layer, ASL's score, propagated."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from asl_vllm.pruners.base import Pruner
from asl_vllm.scoring.step_scores import StepScores

if TYPE_CHECKING:
    from asl_vllm.settings import PrunerSettings


class FastKV(Pruner):
    name = "fastkv"
    summary = "the same at --fixed-layer."
    reference_fixed_layer = 15
    selects = True

    def __init__(self, config: PrunerSettings) -> None:
        super().__init__(config)
        assert config.fixed_layer is not None, "config must be resolved against the model"
        self.layer = config.fixed_layer

    def wants_scores(self, layer: int) -> bool:
        return layer == self.layer

    @classmethod
    def observe_all(cls, layer: int, pruners: Sequence[FastKV], scores: StepScores, rows: Sequence[int]) -> list[bool]:
        return [layer == pruner.layer for pruner in pruners]
