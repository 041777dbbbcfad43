"""The policy interface and the factory the engine calls once per prefill."""

from __future__ import annotations

from typing import Protocol

import torch

from asl_vllm.config import PrunerConfig


class SelectionPolicy(Protocol):
    """Decides, layer by layer during one prefill, whether this is the selection layer."""

    def wants_scores(self, layer: int) -> bool:
        """Whether `observe` needs this layer's pooled window scores."""

    def observe(self, layer: int, pooled: torch.Tensor) -> bool:
        """Feed `pooled[H, N - w]`; True when `layer` is the selection layer."""


def make_policy(config: PrunerConfig) -> SelectionPolicy:
    from asl_vllm.policies.adaptive import AdaptiveLayerPolicy
    from asl_vllm.policies.fixed import FixedLayerPolicy, NoSelectionPolicy

    if config.pruner == "asl":
        return AdaptiveLayerPolicy(config)
    if config.pruner == "fastkv":
        assert config.fixed_layer is not None, "config must be resolved against the model"
        return FixedLayerPolicy(config.fixed_layer)
    if config.pruner == "snapkv":
        return NoSelectionPolicy()
    raise ValueError(f"no selection policy for pruner {config.pruner!r}")
