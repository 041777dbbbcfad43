"""The interface of a budget rule, and what the layer loop hands its hooks.

The loop calls a rule's hooks for its request: `wants_scores` before scoring
a layer (scoring is skipped when no request asks), `after_layer` once the
layer's scores are there (a rule that keeps tokens right away returns them as
a `TailWrite`; the loop writes every request's kept tokens of a layer in one
cache write), and `after_loop` once the last layer has run (a rule that
chooses after all layers moves the kept tokens within the cache, `StepCache`).
The base class keeps every token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from asl_vllm.device_upload import to_device
from asl_vllm.engine.attention_layout import StepTables
from asl_vllm.engine.decoder_stack import DecoderStack
from asl_vllm.scoring import dispatch
from asl_vllm.scoring.kv_layout import layer_layout
from asl_vllm.scoring.step_scores import CachedKeys, LayerCache, StepScores
from asl_vllm.vllm_compat.attention_layer import key_scale, layer_cache

if TYPE_CHECKING:
    from asl_vllm.engine.pruning_request import PruningRequest


@dataclass(frozen=True)
class RequestLayer:
    """A pruning request's share of the layer that has just run."""

    index: int
    scores: StepScores
    # The request's row of `scores`.
    row: int
    # [count, G, d]: the layer's k (RoPE applied) and v of the rows the request ran.
    keys: torch.Tensor
    values: torch.Tensor
    # [N]: the layer's slots of the request's prompt, in order; kept tokens go to its tail (a one-step prefill).
    slots: torch.Tensor
    # The step's caches, where a chunked prompt's kept tokens move in place.
    cache: StepCache


@dataclass(frozen=True)
class TailWrite:
    """Kept tokens of one request and layer: keys/values[K, G, d] (per KV head its own tokens), slots[K]."""

    keys: torch.Tensor
    values: torch.Tensor
    slots: torch.Tensor


class StepCache:
    """The step's KV caches, where an `after_loop` hook moves a request's kept tokens to its tail slots."""

    def __init__(self, stack: DecoderStack, tables: Sequence[StepTables], layer_groups: Sequence[int]) -> None:
        self.stack = stack
        self.tables = tables
        self.layer_groups = layer_groups

    @property
    def num_kv_heads(self) -> int:
        return self.stack.num_kv_heads

    def layer_cache(self, layer: int) -> LayerCache:
        """Layer `layer`'s cache as the scoring operation reads it."""
        attention = self.stack.attentions[layer]
        return LayerCache(layer_cache(attention), layer_layout(attention), key_scale(attention))

    def held_keys(self, layer: int, request: PruningRequest) -> CachedKeys:
        """The keys `request` holds in layer `layer`'s cache: slots [kv_offset, N) of its block-table row."""
        table = self.tables[self.layer_groups[layer]]
        row = table.block_table[request.table_row]
        return CachedKeys(row[request.kv_offset // table.block_size :], request.held_count)

    def compact_tail(self, layer: int, table_row: int, slots: torch.Tensor, num_tokens: int) -> None:
        """Move the tokens at `slots` (per KV head its own, ascending) of a `num_tokens` prompt to its tail."""
        attention = self.stack.attentions[layer]
        cache = layer_cache(attention)
        slots = to_device(slots.to(torch.int32), cache.device)
        row = self.tables[self.layer_groups[layer]].block_table[table_row]
        dispatch.compact_tail(cache, None, row, slots, num_tokens, layer_layout(attention))


class BudgetRule:
    """How many tokens each layer of a pruning prefill keeps, and when they are chosen; one per request.

    `per_kv_head`: each KV head keeps its own tokens, ranked by the query heads that read it (SnapKV's
    rule), instead of one set ranked by the score summed over every head. `keeps_scores`: an auto-budget
    prefill also keeps, per layer, the scores of the past tokens it keeps, in slot order, so that the
    request can be shrunk in place later (`asl_vllm.engine.shrinking`).
    """

    def __init__(self, per_kv_head: bool = False, num_layers: int = 0, keeps_scores: bool = False) -> None:
        self.per_kv_head = per_kv_head
        # Per layer, [1 or G, kept past tokens]; None unless `keeps_scores`.
        self.kept_scores: list[torch.Tensor | None] | None = [None] * num_layers if keeps_scores else None

    @property
    def has_budget(self) -> bool:
        """Whether every layer keeps a tail no longer than a selection's, so propagation may start right after
        the selection layer."""
        return False

    def wants_scores(self, request: PruningRequest, layer: int) -> bool:
        """Whether `after_layer` needs `layer`'s scores of `request`."""
        return False

    def after_layer(self, request: PruningRequest, layer: RequestLayer) -> TailWrite | None:
        """Called after a layer `wants_scores` asked for, before any row is dropped; -> the tokens to keep now."""
        return None

    def after_loop(self, request: PruningRequest, cache: StepCache) -> None:
        """Called once the request's last layer has run (of its re-run, for a two-pass request)."""

    def restart(self) -> None:
        """Forget the first pass of a two-pass request: its re-run's layers hold other tokens."""
        if self.kept_scores is not None:
            self.kept_scores[:] = [None] * len(self.kept_scores)

    def ranked(self, layer: RequestLayer) -> torch.Tensor:
        """What this rule ranks the layer's past tokens by: [M], or [G, M] per KV head."""
        return layer.scores.budget_scores(layer.row, shared=not self.per_kv_head)
