"""A per-layer budget: each layer keeps its own best tokens in its tail slots right after it runs.

SnapKV's rule (`--kv-budget-layers per-layer`): a layer keeps the window plus
its best B' - w past tokens by its own pooled window scores, B' = B rounded up
so that the freed head [0, N - B') is whole blocks; they are gathered from the
layer's own k and v and written to the tail slots [N - B', N) before the next
layer runs (a chunked prompt's earlier tokens are only in the cache: there
the kept tokens move to the tail in place). The keep may differ per layer (pyramidkv: one per KV cache group,
`Pruner.group_keeps`). Under tensor parallelism a per-KV-head budget keeps, per
KV head, tokens of that head's own scores (which, for a replicated KV head, are
summed over its replicas), so every rank keeps what one rank would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from asl_vllm.engine.budget_rules.base import BudgetRule, RequestLayer, TailWrite
from asl_vllm.engine.kept_kv_writes import gather_per_head
from asl_vllm.engine.shrinking import kept_past_scores
from asl_vllm.scoring.reference import budget_select

if TYPE_CHECKING:
    from asl_vllm.engine.pruning_request import PruningRequest


class PerLayer(BudgetRule):
    """`keeps[l]`: the tokens layer l keeps (None: no budget, only an auto budget's scores are kept)."""

    def __init__(
        self, keeps: Sequence[int] | None, num_layers: int, per_kv_head: bool = False, keeps_scores: bool = False
    ) -> None:
        super().__init__(per_kv_head, num_layers, keeps_scores)
        self.keeps = None if keeps is None else list(keeps)

    @property
    def has_budget(self) -> bool:
        return self.keeps is not None

    def cuts(self, request: PruningRequest, layer: int) -> bool:
        """Whether `layer` keeps fewer tokens than the request ran through it."""
        return self.keeps is not None and self.keeps[layer] < request.held_count

    def wants_scores(self, request: PruningRequest, layer: int) -> bool:
        return self.kept_scores is not None or self.cuts(request, layer)

    def after_layer(self, request: PruningRequest, layer: RequestLayer) -> TailWrite | None:
        ranked = self.ranked(layer)
        if not self.cuts(request, layer.index):
            # A layer that keeps all its rows keeps all their scores.
            self.kept_scores[layer.index] = ranked.view(-1, ranked.shape[-1]).clone()
            return None
        keep, window = self.keeps[layer.index], request.config.window
        kept = budget_select(ranked, request.held_count, keep, window, layer.keys.shape[1])
        if self.kept_scores is not None:
            self.kept_scores[layer.index] = kept_past_scores(ranked, kept, keep, window)
        request.decision.layer_offsets[layer.index] = request.step.seq_len - keep
        if request.chunked:
            # Earlier chunks' tokens are only in the cache: the layer's kept tokens move there, in place.
            layer.cache.compact_tail(layer.index, request.table_row, request.kv_offset + kept, request.step.seq_len)
            return None
        return TailWrite(gather_per_head(layer.keys, kept), gather_per_head(layer.values, kept), layer.slots[-keep:])
