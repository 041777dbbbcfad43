"""The pruner interface: one subclass per pruner, in `asl_vllm/pruners/<name>.py`.

A subclass declares what the rest of the plugin needs to know about its method
(its name, which settings apply, its budget rule), so the CLI, the config and
per-request checks, the engine and the benchmarks read the registry
(`asl_vllm.pruners.registry`) instead of comparing names. An instance is the
method's selection rule for one pruning prefill: layer by layer it decides
whether this is the selection layer, and by what score. The base class never
selects (the rule of a re-run's second pass).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import torch

from asl_vllm.budget import kept_tokens
from asl_vllm.scoring.step_scores import StepScores

if TYPE_CHECKING:
    from asl_vllm.settings import PrunerSettings


class Pruner:
    """A pruning method. `two_pass`: after selecting, the whole model re-runs from layer 0 on the
    selected tokens with fresh positions (GemFilter) instead of propagating them through the deeper layers."""

    name: ClassVar[str]
    # One sentence for `--kv-pruner`'s help.
    summary: ClassVar[str]
    # False only for `none`: vLLM unchanged.
    prunes: ClassVar[bool] = True
    # Selection layer in the paper's 32-layer model (scaled to the depth); set: --fixed-layer applies.
    reference_fixed_layer: ClassVar[int | None] = None
    # ASL's rank-variance rule: --asl-min-layer and --asl-obs-layers must leave a selection layer.
    adaptive: ClassVar[bool] = False
    # Layers after the selection layer hold only --asl-select-k tokens, so a budget may not exceed it.
    selects: ClassVar[bool] = False
    needs_budget: ClassVar[bool] = False
    # --asl-two-pass applies.
    two_pass_option: ClassVar[bool] = False
    # Every layer keeps the same --kv-budget tokens, so one KV cache group frees as much as many.
    uniform_budget: ClassVar[bool] = True
    two_pass: bool = False

    def __init__(self, config: PrunerSettings) -> None:
        self.config = config

    def wants_scores(self, layer: int) -> bool:
        """Whether `observe_all` needs this layer's scores."""
        return False

    @classmethod
    def observe_all(cls, layer: int, pruners: Sequence[Pruner], scores: StepScores, rows: Sequence[int]) -> list[bool]:
        """Feed `layer`'s scores to several requests' pruners of this class at once (pruner i reads
        row rows[i] of `scores`); True for each whose selection layer this is."""
        return [False] * len(pruners)

    def token_scores(self, scores: StepScores, row: int) -> torch.Tensor:
        """[M]: what the past tokens of row `row` are ranked by at the selection layer (top ones kept)."""
        return scores.token_scores[row, : scores.lengths[row]]

    @classmethod
    def group_keeps(cls, config: PrunerSettings, num_tokens: int, block_size: int, num_groups: int) -> list[int] | None:
        """Tokens every layer of each KV cache group keeps of a `num_tokens` prompt (None: no budget)."""
        if config.kv_budget is None:
            return None
        return [kept_tokens(num_tokens, config.kv_budget, block_size)] * num_groups
