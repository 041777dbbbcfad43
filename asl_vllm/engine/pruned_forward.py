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

A two-pass policy (GemFilter, ASL two-pass) instead leaves the loop at its
selection layer; once the loop is done, the whole model re-runs from layer 0 on
the selected tokens' embeddings with fresh positions 0..k'-1, every layer
writing into the tail slots [N - k', N) (`_rerun`). The first pass's KV is
overwritten or left in blocks the scheduler frees. Later steps of that request
use position = slot - (N - k').
"""

from __future__ import annotations

import copy
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
from asl_vllm.policies.fixed import NoSelectionPolicy
from asl_vllm.scoring.layer_scores import LayerScores
from asl_vllm.scoring.reference import kv_head_scores, select_tokens, snapkv_select


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
    # Set for a request re-run at an earlier prefill: RoPE position = slot - position_offset.
    position_offset: int = 0


class _Live:
    """A request's rows, positions and offsets while the layer loop runs."""

    def __init__(
        self,
        step: RequestStep,
        table_row: int,
        positions: torch.Tensor,
        stack: DecoderStack,
        block_size: int,
        layer_groups: list[int],
    ) -> None:
        self.step = step
        self.table_row = table_row
        self.rows = torch.arange(step.row_start, step.row_start + step.num_rows)
        self.slot_rows = self.rows
        self.positions = positions[self.rows.to(positions.device)] - step.position_offset
        self.kv_offset = 0
        self.decision: PruneDecision | None = None
        # Set when a two-pass policy selected: the local rows to re-run; the request leaves this pass.
        self.rerun_rows: torch.Tensor | None = None
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
                two_pass=config.two_pass,
                layer_offsets=[0] * stack.num_layers,
                layer_groups=layer_groups,
            )

    def keep(self, local: torch.Tensor) -> None:
        """Continue with the selected local rows; their KV goes to the request's tail slots."""
        step = self.step
        keep = len(local)
        self.rows = self.rows[local]
        self.positions = self.positions[local.to(self.positions.device)]
        self.slot_rows = torch.arange(step.row_start + step.seq_len - keep, step.row_start + step.seq_len)
        self.kv_offset = step.seq_len - keep

    def for_rerun(self) -> _Live:
        """This request's second pass: the selected rows from layer 0, positions 0..k'-1, tail slots."""
        assert self.rerun_rows is not None and self.decision is not None
        rerun = copy.copy(self)
        rerun.rows = self.rows[self.rerun_rows]
        rerun.positions = torch.arange(len(self.rerun_rows), device=self.positions.device)
        rerun.keep(torch.arange(len(self.rerun_rows)))
        rerun.rerun_rows = None
        rerun.policy = NoSelectionPolicy()
        self.decision.position_offset = rerun.kv_offset
        return rerun

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
        # Every row's slot in each layer's group, kept before the loop replaces the mapping per layer.
        full_slots = [context.slot_mapping[self.stack.layer_name(layer)] for layer in range(self.stack.num_layers)]
        lives = [
            _Live(step, index, positions, self.stack, self.block_size, self.layer_groups)
            for index, step in enumerate(steps)
        ]
        pruning = [live for live in lives if live.decision is not None]
        num_real = sum(step.num_rows for step in steps)

        hidden = inputs_embeds[:num_real] if inputs_embeds is not None else self.stack.embed(input_ids[:num_real])
        # Layers update their inputs in place; a re-run needs the untouched embeddings.
        embeddings = hidden.clone() if inputs_embeds is not None and pruning else None
        full = hidden.new_zeros((positions.shape[0], hidden.shape[-1]))
        self.capture.active = bool(pruning)
        try:
            self._run_layers(lives, hidden, tables, full_slots, full)
            reruns = [live.for_rerun() for live in lives if live.rerun_rows is not None]
            if reruns:
                self._rerun(reruns, input_ids, embeddings, tables, full_slots, full)
        finally:
            self.capture.active = False
            self.capture.clear()
        return full, [live.decision for live in pruning]

    def _run_layers(
        self,
        lives: list[_Live],
        hidden: torch.Tensor,
        tables: Sequence[StepTables],
        full_slots: Sequence[torch.Tensor],
        full: torch.Tensor,
    ) -> None:
        """Run every layer on `lives` (rows in `hidden`'s order) and scatter the final states into `full`.

        A request whose two-pass policy selects leaves the loop at that layer; the loop ends
        early when none is left.
        """
        context = get_forward_context()
        residual: torch.Tensor | None = None
        pruning = any(live.decision is not None for live in lives)
        layout_key: tuple | None = None
        for layer_index, layer in enumerate(self.stack.layers):
            group = self.layer_groups[layer_index]
            views = tuple(live.view(layer_index) for live in lives)
            key = (group, views, tuple(live.table_row for live in lives))
            if key != layout_key:
                layout_key = key
                layer_positions = torch.cat([live.positions for live in lives])
                slots = full_slots[layer_index][torch.cat([live.slot_rows for live in lives])]
                layer_tables = tables[group].select([live.table_row for live in lives])
                common = build_common_metadata(layer_tables, views, slots, layer_positions)
                metadata = self.build_metadata(common, group)
            name = self.stack.layer_name(layer_index)
            context.attn_metadata[name] = metadata
            context.slot_mapping[name] = slots
            hidden, residual = layer(layer_positions, hidden, residual)
            if pruning:
                hidden, residual = self._after_layer(layer_index, lives, hidden, residual, full_slots[layer_index])
                lives = [live for live in lives if live.rerun_rows is None]
                if not lives:
                    return
        full[torch.cat([live.rows for live in lives])] = self.stack.final_norm(hidden, residual)

    def _rerun(
        self,
        reruns: list[_Live],
        input_ids: torch.Tensor | None,
        embeddings: torch.Tensor | None,
        tables: Sequence[StepTables],
        full_slots: Sequence[torch.Tensor],
        full: torch.Tensor,
    ) -> None:
        """The second pass of two-pass requests: all layers, selected tokens only, fresh positions."""
        rows = torch.cat([live.rows for live in reruns])
        if embeddings is not None:
            hidden = embeddings[rows.to(embeddings.device)]
        else:
            hidden = self.stack.embed(input_ids[rows.to(input_ids.device)])
        self._run_layers(reruns, hidden, tables, full_slots, full)

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
            elif live.policy.two_pass:
                live.rerun_rows = local
            else:
                keep_rows.append(start + local)
                live.keep(local)
            start += count
        index_tensor = torch.cat(keep_rows).to(hidden.device) if keep_rows else torch.empty(0, dtype=torch.long)
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
        keys = key[start : start + count].view(count, stack.num_kv_heads, stack.head_size)
        queries = query[start : start + count].view(count, stack.num_heads, stack.head_size)
        scores = LayerScores(queries, keys, stack.scale, config.window, config.pool_kernel)

        selected = None
        if wants_selection and live.policy.observe(layer_index, scores):
            decision.selection_layer = layer_index
            decision.selected_tokens = min(live.select_keep, count)
            # A single pass has nothing left to propagate to after the last layer; a re-run still shrinks the KV.
            if live.select_keep < count and (live.policy.two_pass or not last_layer):
                ranked = live.policy.token_scores(scores)
                selected = select_tokens(ranked, count, live.select_keep, config.window).cpu()
                decision.selected_indices = selected

        decision.layer_offsets[layer_index] = live.kv_offset
        if wants_budget:
            step = live.step
            kept = snapkv_select(
                kv_head_scores(scores.pooled, stack.num_kv_heads), count, live.budget_keep, config.window
            )
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
