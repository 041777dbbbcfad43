"""The policy interface and the factory the engine calls once per pruning prefill."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from asl_vllm.config import PrunerConfig
from asl_vllm.scoring.step_scores import StepScores


class SelectionPolicy(Protocol):
    """Decides, layer by layer during one prefill, whether this is the selection layer, and by what score.

    `two_pass`: after selecting, the whole model re-runs from layer 0 on the selected tokens with
    fresh positions (GemFilter) instead of propagating them through the deeper layers.
    """

    two_pass: bool

    def wants_scores(self, layer: int) -> bool:
        """Whether `observe_all` needs this layer's scores."""

    @classmethod
    def observe_all(
        cls, layer: int, policies: Sequence[SelectionPolicy], scores: StepScores, rows: Sequence[int]
    ) -> list[bool]:
        """Feed `layer`'s scores to several requests' policies of this class at once (policy i reads
        row rows[i] of `scores`); True for each whose selection layer this is."""

    def token_scores(self, scores: StepScores, row: int) -> torch.Tensor:
        """[M]: what the past tokens of row `row` are ranked by at the selection layer (top ones kept)."""


def make_policy(config: PrunerConfig) -> SelectionPolicy:
    from asl_vllm.policies.adaptive import AdaptiveLayerPolicy
    from asl_vllm.policies.fixed import FixedLayerPolicy, GemFilterPolicy, NoSelectionPolicy

    if config.pruner == "asl":
        return AdaptiveLayerPolicy(config)
    if config.pruner in ("fastkv", "gemfilter"):
        assert config.fixed_layer is not None, "config must be resolved against the model"
        policy = FixedLayerPolicy if config.pruner == "fastkv" else GemFilterPolicy
        return policy(config.fixed_layer)
    if config.pruner == "snapkv":
        return NoSelectionPolicy()
    raise ValueError(f"no selection policy for pruner {config.pruner!r}")
