"""ASL: the selection layer is the first whose rank variance settles below tau.

Taniguchi et al., "Adaptive Layer Selection for Layer-Wise Token Pruning in LLM
Inference", arXiv 2601.07667. Ranks of the last `obs_layers` layers are
compared; their variance relative to the one at `min_layer` falling below tau
means the token ranking has stopped moving, so selecting now loses little.
With `--asl-two-pass` the selected tokens are re-run GemFilter style instead
of propagated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from asl_vllm.pruners.base import Pruner
from asl_vllm.scoring import dispatch
from asl_vllm.scoring.reference import AdaptiveLayerRule
from asl_vllm.scoring.step_scores import StepScores

if TYPE_CHECKING:
    from asl_vllm.settings import PrunerSettings


class ASL(Pruner):
    name = "asl"
    summary = (
        "adaptive selection layer, the selected --asl-select-k tokens go on through the deeper layers "
        "(saves their compute)."
    )
    adaptive = True
    selects = True
    two_pass_option = True

    def __init__(self, config: PrunerSettings) -> None:
        super().__init__(config)
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

    @classmethod
    def observe_all(cls, layer: int, pruners: Sequence[ASL], scores: StepScores, rows: Sequence[int]) -> list[bool]:
        """One batched rank and rank-variance computation, and one read of the variances, for all requests."""
        lengths = [scores.lengths[row] for row in rows]
        ranks = dispatch.batch_ranks(scores.token_scores[list(rows)], lengths)
        deciding = [
            index for index, pruner in enumerate(pruners) if pruner.rule.push(layer, ranks[index, : lengths[index]])
        ]
        chosen = [False] * len(pruners)
        if not deciding:
            return chosen
        width = max(lengths[index] for index in deciding)
        history = torch.zeros(
            len(deciding), pruners[deciding[0]].rule.obs_layers, width, dtype=ranks.dtype, device=ranks.device
        )
        for slot, index in enumerate(deciding):
            for depth, layer_ranks in enumerate(pruners[index].rule.history):
                history[slot, depth, : layer_ranks.shape[0]] = layer_ranks
        variances = dispatch.batch_rank_variance(
            history, [lengths[index] for index in deciding], [pruners[index].rule.top for index in deciding]
        ).tolist()
        for index, variance in zip(deciding, variances, strict=True):
            pruner = pruners[index]
            chosen[index] = pruner.decided = pruner.rule.decide(layer, variance)
        return chosen
