"""The decoder layer loop with per-request token selection, propagation and compaction.

One step may mix prefills being pruned, decodes of requests pruned earlier and
ordinary requests. Before each layer, every request's rows and KV offset are
turned into attention metadata (rebuilt only when they change). After each
layer, prefills being pruned are scored from the layer's own q and k; a request
whose policy selects at layer s continues with only its selected rows, with
their original positions, and its deeper layers write their KV straight into
the tail slots [N - k', N). With a budget, every layer's kept tokens are
compacted to the tail slots [N - B', N) right after the layer. The final hidden
states are scattered back to the full row count, so the runner's logits
indices (each request's last token, always in the window) stay valid.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from vllm.forward_context import get_forward_context
from vllm.v1.attention.backend import CommonAttentionMetadata

from asl_vllm.budget import kept_tokens
from asl_vllm.config import PrunerConfig
from asl_vllm.engine.attention_layout import RequestView, StepTables, build_common_metadata
from asl_vllm.engine.capture import AttentionCapture
from asl_vllm.engine.compaction import write_kept_tokens
from asl_vllm.engine.decisions import PruneDecision
from asl_vllm.engine.decoder_stack import DecoderStack
from asl_vllm.policies import make_policy
from asl_vllm.scoring.dispatch import window_histogram
from asl_vllm.scoring.reference import kv_head_scores, pool_scores, select_tokens, snapkv_select, token_scores


@dataclass(frozen=True)
class RequestStep:
    """One request's part of the step, in the runner's batch order."""

    req_id: str
    row_start: int
    num_rows: int
    seq_len: int
    # Set when this step is the request's whole prefill and it is to be pruned.
    prune_config: PrunerConfig | None = None
    # Set for a request pruned at an earlier prefill: first kept slot per layer.
    layer_offsets: Sequence[int] | None = None


class _Live:
    """A request's rows and offsets while the layer loop runs."""

    def __init__(self, step: RequestStep, stack: DecoderStack, block_size: int, layer_groups: list[int]) -> None:
        self.step = step
        self.rows = torch.arange(step.row_start, step.row_start + step.num_rows)
        self.slot_rows = self.rows
        self.kv_offset = 0
        self.decision: PruneDecision | None = None
        config = step.prune_config
        if config is not None:
            self.policy = make_policy(config)
            self.select_keep = kept_tokens(step.seq_len, config.select_k, block_size)
            self.budget_keep = (
                None if config.kv_budget is None else kept_tokens(step.seq_len, config.kv_budget, block_size)
            )
            self.decision = PruneDecision(
                req_id=step.req_id,
                pruner=config.pruner,
                num_prompt_tokens=step.seq_len,
                layer_offsets=[0] * stack.num_layers,
                block_size=block_size,
                layer_groups=layer_groups,
            )

    def view(self, layer: int) -> RequestView:
        offset = self.step.layer_offsets[layer] if self.step.layer_offsets is not None else self.kv_offset
        return RequestView(num_rows=len(self.rows), seq_len=self.step.seq_len, kv_offset=offset)


class PrunedForward:
    def __init__(
        self,
        stack: DecoderStack,
        capture: AttentionCapture,
        block_size: int,
        layer_groups: Sequence[int],
        build_metadata: Callable[[CommonAttentionMetadata, int], Any],
    ) -> None:
        self.stack = stack
        self.capture = capture
        self.block_size = block_size
        # KV cache group of each layer: its block table, slot mapping and metadata builder.
        self.layer_groups = list(layer_groups)
        self.build_metadata = build_metadata

    def run(
        self,
        steps: Sequence[RequestStep],
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        inputs_embeds: torch.Tensor | None,
        tables: Sequence[StepTables],
    ) -> tuple[torch.Tensor, list[PruneDecision]]:
        """`tables[g]`: the step's block table of KV cache group g."""
        context = get_forward_context()
        context.attn_metadata = dict(context.attn_metadata)
        context.slot_mapping = dict(context.slot_mapping)
        lives = [_Live(step, self.stack, self.block_size, self.layer_groups) for step in steps]
        pruning = [live for live in lives if live.decision is not None]
        num_total = positions.shape[0]
        num_real = sum(step.num_rows for step in steps)

        hidden = inputs_embeds[:num_real] if inputs_embeds is not None else self.stack.embed(input_ids[:num_real])
        residual: torch.Tensor | None = None
        self.capture.active = bool(pruning)
        layout_key: tuple[int, tuple[RequestView, ...]] | None = None
        try:
            for layer_index, layer in enumerate(self.stack.layers):
                name = self.stack.layer_name(layer_index)
                group = self.layer_groups[layer_index]
                # This layer's group's slot of every row of the step.
                full_slots = context.slot_mapping[name]
                views = tuple(live.view(layer_index) for live in lives)
                if (group, views) != layout_key:
                    layout_key = (group, views)
                    rows = torch.cat([live.rows for live in lives])
                    layer_positions = positions[rows]
                    slots = full_slots[torch.cat([live.slot_rows for live in lives])]
                    common = build_common_metadata(tables[group], views, slots, layer_positions)
                    metadata = self.build_metadata(common, group)
                context.attn_metadata[name] = metadata
                context.slot_mapping[name] = slots
                hidden, residual = layer(layer_positions, hidden, residual)
                if pruning:
                    hidden, residual = self._after_layer(layer_index, lives, hidden, residual, full_slots)
        finally:
            self.capture.active = False
            self.capture.clear()

        out = self.stack.final_norm(hidden, residual)
        full = out.new_zeros((num_total, out.shape[-1]))
        full[torch.cat([live.rows for live in lives])] = out
        return full, [live.decision for live in pruning]

    def _after_layer(
        self,
        layer_index: int,
        lives: list[_Live],
        hidden: torch.Tensor,
        residual: torch.Tensor,
        full_slots: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        query, key, value = self.capture.take(layer_index)
        last_layer = layer_index == self.stack.num_layers - 1
        selections: dict[int, torch.Tensor] = {}
        start = 0
        for index, live in enumerate(lives):
            count = len(live.rows)
            if live.decision is not None:
                selected = self._score_request(
                    layer_index, live, start, count, query, key, value, full_slots, last_layer
                )
                if selected is not None:
                    selections[index] = selected
            start += count
        if not selections:
            return hidden, residual

        keep_rows = []
        start = 0
        for index, live in enumerate(lives):
            count = len(live.rows)
            local = selections.get(index)
            if local is None:
                keep_rows.append(torch.arange(start, start + count))
            else:
                keep_rows.append(start + local)
                step = live.step
                keep = len(local)
                live.rows = live.rows[local]
                live.slot_rows = torch.arange(step.row_start + step.seq_len - keep, step.row_start + step.seq_len)
                live.kv_offset = step.seq_len - keep
            start += count
        index_tensor = torch.cat(keep_rows).to(hidden.device)
        return hidden[index_tensor], residual[index_tensor]

    def _score_request(
        self,
        layer_index: int,
        live: _Live,
        start: int,
        count: int,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        full_slots: torch.Tensor,
        last_layer: bool,
    ) -> torch.Tensor | None:
        """Score one pruning prefill at this layer; returns its selected local rows, if any."""
        config = live.step.prune_config
        decision = live.decision
        assert config is not None and decision is not None
        wants_selection = live.policy.wants_scores(layer_index)
        wants_budget = live.budget_keep is not None and live.budget_keep < count
        if not (wants_selection or wants_budget):
            decision.layer_offsets[layer_index] = live.kv_offset
            return None
        stack = self.stack
        began = time.perf_counter()
        window = min(config.window, count)
        keys = key[start : start + count].view(count, stack.num_kv_heads, stack.head_size)
        q_win = query[start + count - window : start + count].view(window, stack.num_heads, stack.head_size)
        pooled = pool_scores(window_histogram(q_win, keys, stack.scale), config.pool_kernel)

        selected = None
        if wants_selection and live.policy.observe(layer_index, pooled):
            decision.selection_layer = layer_index
            decision.selected_tokens = min(live.select_keep, count)
            if live.select_keep < count and not last_layer:
                selected = select_tokens(token_scores(pooled), count, live.select_keep, config.window)

        decision.layer_offsets[layer_index] = live.kv_offset
        if wants_budget:
            step = live.step
            kept = snapkv_select(kv_head_scores(pooled, stack.num_kv_heads), count, live.budget_keep, config.window)
            values = value[start : start + count].view(count, stack.num_kv_heads, stack.head_size)
            tail = step.row_start + step.seq_len
            write_kept_tokens(
                stack.attentions[layer_index],
                keys,
                values,
                kept.to(keys.device),
                full_slots[tail - live.budget_keep : tail],
            )
            decision.layer_offsets[layer_index] = step.seq_len - live.budget_keep
        decision.scoring_seconds += time.perf_counter() - began
        return selected
