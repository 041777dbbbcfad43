"""A layer-shared budget (the default): one kept set for every layer, chosen once the last layer has run.

Each layer's scores are added up per prompt token as shares of that layer's
total (`layer_shares`), so every layer counts alike, however peaked or flat
its attention. Once the last layer has run, the window plus the best B' - w
tokens by the summed shares, among the tokens the last layer ran (the selected
ones after a selection layer), are moved to the tail [N - B', N) of every
layer with the in-place compaction: each layer's KV is still where the loop
wrote it (slots [0, N), or the tail [N - k', N) after a selection). On CUDA
the kept set is the one host read per request this rule needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from asl_vllm.device_upload import to_device
from asl_vllm.engine.budget_rules.base import BudgetRule, RequestLayer, StepCache, TailWrite
from asl_vllm.engine.shrinking import kept_past_scores
from asl_vllm.scoring.reference import budget_select, layer_shares

if TYPE_CHECKING:
    from asl_vllm.engine.pruning_request import PruningRequest


class LayerShared(BudgetRule):
    """`keep`: the tokens every layer keeps of the `num_tokens` prompt (None: no budget, an auto budget
    keeps every token and, per layer, the summed shares of the tokens it holds, for a later shrink)."""

    def __init__(
        self,
        keep: int | None,
        num_tokens: int,
        num_layers: int,
        per_kv_head: bool = False,
        keeps_scores: bool = False,
    ) -> None:
        super().__init__(per_kv_head, num_layers, keeps_scores)
        self.keep = keep
        # Whether the budget prunes this prompt at all (a prompt within it keeps every token).
        self.budgeted = keep is not None and keep < num_tokens
        # Every scored layer's shares, summed by prompt token: [N], or [G, N] per KV head.
        self.layer_scores: torch.Tensor | None = None
        # Per layer: its first slot and its rows' prompt indices, to move the kept tokens after the loop.
        self.layer_rows: dict[int, tuple[int, torch.Tensor]] = {}

    @property
    def has_budget(self) -> bool:
        return self.keep is not None

    def wants_scores(self, request: PruningRequest, layer: int) -> bool:
        return True

    def after_layer(self, request: PruningRequest, layer: RequestLayer) -> TailWrite | None:
        shares = layer_shares(self.ranked(layer))
        prompt_rows = request.held
        if self.layer_scores is None:
            self.layer_scores = shares.new_zeros((*shares.shape[:-1], request.step.seq_len))
        self.layer_scores[..., to_device(prompt_rows[: shares.shape[-1]], shares.device)] += shares
        self.layer_rows[layer.index] = (request.kv_offset, prompt_rows)
        return None

    def after_loop(self, request: PruningRequest, cache: StepCache) -> None:
        num_tokens, window = request.step.seq_len, request.config.window
        device = self.layer_scores.device
        if not self.budgeted:
            for layer, (_, rows) in self.layer_rows.items():
                past = to_device(rows[: len(rows) - window], device)
                self.kept_scores[layer] = self.layer_scores[..., past].reshape(-1, len(past))
            return
        final_rows = request.held
        ranked = self.layer_scores[..., to_device(final_rows[: request.held_count - window], device)]
        keep = min(self.keep, request.held_count)
        kept = budget_select(ranked, request.held_count, keep, window, cache.num_kv_heads)
        kept_prompt = final_rows[kept.cpu()]
        for layer, (offset, rows) in self.layer_rows.items():
            request.decision.layer_offsets[layer] = num_tokens - keep
            if len(rows) == keep:  # a layer after the selection that keeps every selected token, in place
                continue
            cache.compact_tail(layer, request.table_row, offset + torch.searchsorted(rows, kept_prompt), num_tokens)
        if self.kept_scores is not None:
            self.kept_scores[:] = [kept_past_scores(ranked, kept, keep, window)] * len(self.kept_scores)

    def restart(self) -> None:
        super().restart()
        self.layer_scores, self.layer_rows = None, {}
