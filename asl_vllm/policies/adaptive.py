"""ASL: the selection layer is the first whose rank variance settles below tau.

Taniguchi et al., "Adaptive Layer Selection for Layer-Wise Token Pruning in LLM
Inference", arXiv 2601.07667. Ranks of the last `obs_layers` layers are
compared; their variance relative to the one at `min_layer` falling below tau
means the token ranking has stopped moving, so selecting now loses little.
With `--asl-two-pass` the selected tokens are re-run GemFilter style instead
of propagated.
"""

from __future__ import annotations

import torch

from asl_vllm.config import PrunerConfig
from asl_vllm.scoring import reference
from asl_vllm.scoring.layer_scores import LayerScores
from asl_vllm.scoring.reference import AdaptiveLayerRule, descending_ranks


class AdaptiveLayerPolicy:
    def __init__(self, config: PrunerConfig) -> None:
        assert config.min_layer is not None, "config must be resolved against the model"
        self.rule = AdaptiveLayerRule(
            min_layer=config.min_layer,
            obs_layers=config.obs_layers,
            tau=config.tau,
            top=config.select_k - config.window,
        )
        self.two_pass = config.two_pass
        self.decided = False

    def wants_scores(self, layer: int) -> bool:
        return not self.decided and layer >= self.rule.first_observed_layer

    def observe(self, layer: int, scores: LayerScores) -> bool:
        if not self.wants_scores(layer):
            return False
        self.decided = self.rule.observe(layer, descending_ranks(self.token_scores(scores)))
        return self.decided

    def token_scores(self, scores: LayerScores) -> torch.Tensor:
        return reference.token_scores(scores.pooled)
