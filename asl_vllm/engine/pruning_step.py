"""The decoder layer loop of a step that holds pruning prefills (every other step runs vLLM's forward).

One step may mix prefills being pruned, decodes of requests pruned earlier and
ordinary requests. Before each layer, every request's rows and KV offset are
turned into attention metadata by vLLM's own builder (rebuilt only when they
change). After each layer, the step's pruning prefills are scored together from
the layer's own q and k (`StepScores`: one batched window-score computation per
layer, Triton on CUDA), each request's policy decides whether this is its
selection layer. A per-layer budget keeps each layer's best tokens in the tail
slots [N - B', N) right after the layer; a layer-shared budget (the default)
adds each layer's scores up and, once the last layer has run, moves one kept
set to the tail of every layer with the in-place compaction.

A request whose policy selects at layer s continues with only its selected
rows, with their original positions, and its deeper layers write their KV
straight into the tail slots [N - k', N). Every layer of a KV cache group must
read the same KV offset (decode then needs one shifted block table per group):
with a budget every layer keeps the same tail anyway, so propagation starts
right after s; without one, the layers after s that share s's group still run
on every token and keep full KV, and propagation starts after the group's last
layer (with one layer per group, that is s itself). The final hidden states are
scattered back to the full row count, so the runner's logits indices (each
request's last token, always in the window) stay valid.

A two-pass policy (GemFilter, ASL two-pass) instead leaves the loop at its
selection layer; once the loop is done, the whole model re-runs from layer 0 on
the selected tokens' embeddings with fresh positions 0..k'-1, every layer
writing into the tail slots [N - k', N). The first pass's KV is overwritten or
left in blocks the scheduler frees.

Under tensor parallelism every rank runs this loop on its own heads. The
scores that rank tokens are summed over the TP group first (`StepScores`,
`HeadShards`), so every rank makes the same decisions and keeps the same rows,
offsets and slots; only a per-KV-head budget keeps, per KV head, tokens of
that head's own scores (which, for a replicated KV head, are summed over its
replicas). The layers' own collectives then see the same rows on every rank.

On CUDA the loop waits for the device only where the rule needs a value on
the host: the rank variances of each layer at which an ASL request decides
(`ASL.observe_all`, one read for the step's requests), a selection's kept rows
(how many rows the deeper layers run), and a layer-shared budget's kept set
once per request after the last layer. Row indices, lengths and slots are
built on the host and uploaded asynchronously (`asl_vllm.device_upload`).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from vllm.v1.attention.backend import CommonAttentionMetadata

from asl_vllm.budget import kept_tokens
from asl_vllm.config import PrunerConfig
from asl_vllm.device_upload import to_device
from asl_vllm.engine.attention_layout import RequestView, StepTables, build_common_metadata
from asl_vllm.engine.capture import AttentionCapture
from asl_vllm.engine.compaction import gather_per_head, write_tokens
from asl_vllm.engine.decisions import PruneDecision
from asl_vllm.engine.decoder_stack import DecoderStack
from asl_vllm.engine.shrinking import kept_past_scores
from asl_vllm.policies import Pruner, make_policy
from asl_vllm.scoring import dispatch
from asl_vllm.scoring.head_shards import SINGLE_RANK, HeadShards
from asl_vllm.scoring.kv_layout import layer_layout
from asl_vllm.scoring.reference import budget_select, layer_shares, select_tokens
from asl_vllm.scoring.step_scores import StepScores
from asl_vllm.vllm_compat.eager_kernels import fused_kernels
from asl_vllm.vllm_compat.forward_context import LayerContexts


@dataclass(frozen=True)
class RequestStep:
    """One request's part of the step, in the runner's batch order."""

    req_id: str
    row_start: int
    num_rows: int
    seq_len: int
    # Set when this step is the request's whole prefill and it is to be pruned.
    prune_config: PrunerConfig | None = None
    # Set for a request pruned at an earlier prefill: first kept slot per KV cache group.
    group_offsets: Sequence[int] | None = None
    # An auto-budget prefill (`prune_config` holds its chosen budget): every layer's scores of the tokens it
    # keeps are kept too, so that the request can be shrunk in place later (`asl_vllm.engine.shrinking`).
    keeps_scores: bool = False


class LiveRequest:
    """A request's rows, positions and offsets while the layer loop runs."""

    def __init__(
        self,
        step: RequestStep,
        table_row: int,
        positions: torch.Tensor,
        layer_groups: Sequence[int],
        block_size: int,
    ) -> None:
        self.step = step
        self.table_row = table_row
        self.rows = torch.arange(step.row_start, step.row_start + step.num_rows)
        self.slot_rows = self.rows
        self.positions = positions[to_device(self.rows, positions.device)]
        self.kv_offset = 0
        self.decision: PruneDecision | None = None
        # A single-pass selection waiting for its propagation layer: (that layer, local rows kept).
        self.pending: tuple[int, torch.Tensor] | None = None
        # Set when a two-pass policy selected: the local rows to re-run; the request leaves this pass.
        self.rerun_rows: torch.Tensor | None = None
        config = step.prune_config
        if config is not None:
            self.config = config
            self.policy = make_policy(config)
            self.select_keep = kept_tokens(step.seq_len, config.select_k, block_size)
            # Tokens each layer keeps, by its KV cache group (the pruner's budget rule); None: no budget.
            group_keeps = config.method.group_keeps(config, step.seq_len, block_size, max(layer_groups) + 1)
            self.budget_keeps = None if group_keeps is None else [group_keeps[group] for group in layer_groups]
            # Whether the budget prunes this prompt at all (a prompt within it keeps every token).
            self.budgeted = self.budget_keeps is not None and self.budget_keeps[0] < step.seq_len
            self.shares_layers = config.layer_shared_budget and (self.budgeted or step.keeps_scores)
            self.decision = PruneDecision(
                req_id=step.req_id,
                pruner=config.pruner,
                num_prompt_tokens=step.seq_len,
                two_pass=config.two_pass,
                layer_offsets=[0] * len(layer_groups),
                layer_groups=list(layer_groups),
                kv_budget=config.kv_budget,
                budget_auto=step.keeps_scores,
            )
        else:
            self.shares_layers = False
        # A layer-shared budget: every scored layer's scores as shares (`layer_shares`), summed by prompt token,
        # and per layer its first slot and its rows' prompt indices, to move the kept tokens after the loop.
        self.layer_scores: torch.Tensor | None = None
        self.layer_rows: dict[int, tuple[int, torch.Tensor]] = {}
        # Per layer, [1 or G, kept past tokens]: the scores of the past tokens the layer keeps, in slot order.
        self.kept_scores: list[torch.Tensor | None] | None = [None] * len(layer_groups) if step.keeps_scores else None

    @property
    def count(self) -> int:
        return len(self.rows)

    def wants_selection(self, layer: int) -> bool:
        return self.decision is not None and self.pending is None and self.policy.wants_scores(layer)

    def keeps_scores(self) -> bool:
        return self.kept_scores is not None

    def budget_scores(self, scores: StepScores, row: int) -> torch.Tensor:
        """What this request's budget ranks the layer's past tokens by: [M], or [G, M] per KV head."""
        return scores.budget_scores(row, shared=self.config.budget_heads == "shared")

    def wants_budget(self, layer: int) -> bool:
        """Whether this layer keeps its own best tokens right after it runs (a layer-shared budget waits)."""
        return (
            self.decision is not None
            and not self.shares_layers
            and self.budget_keeps is not None
            and self.budget_keeps[layer] < self.count
        )

    def keep(self, local: torch.Tensor) -> None:
        """Continue with the selected local rows; their KV goes to the request's tail slots."""
        step = self.step
        keep = len(local)
        self.rows = self.rows[local]
        self.positions = self.positions[to_device(local, self.positions.device)]
        self.slot_rows = torch.arange(step.row_start + step.seq_len - keep, step.row_start + step.seq_len)
        self.kv_offset = step.seq_len - keep

    def for_rerun(self) -> LiveRequest:
        """This request's second pass: the selected rows from layer 0, positions 0..k'-1, tail slots."""
        assert self.rerun_rows is not None and self.decision is not None
        rerun = copy.copy(self)
        rerun.rows = self.rows[self.rerun_rows]
        rerun.positions = torch.arange(len(self.rerun_rows), device=self.positions.device)
        rerun.keep(torch.arange(len(self.rerun_rows)))
        rerun.rerun_rows = None
        rerun.policy = Pruner(self.config)  # the base rule never selects
        rerun.layer_scores, rerun.layer_rows = None, {}
        if self.kept_scores is not None:
            self.kept_scores[:] = [None] * len(self.kept_scores)  # the re-run's layers hold other tokens
        self.decision.position_offset = rerun.kv_offset
        return rerun

    def view(self, group: int) -> RequestView:
        offset = self.step.group_offsets[group] if self.step.group_offsets is not None else self.kv_offset
        return RequestView(num_rows=self.count, seq_len=self.step.seq_len, kv_offset=offset)


class PruningStep:
    def __init__(
        self,
        stack: DecoderStack,
        block_size: int,
        layer_groups: Sequence[int],
        build_metadata: Callable[[CommonAttentionMetadata, int], Any],
        window: int,
        pool_kernel: int,
        fused_kernels: bool,
        shards: HeadShards = SINGLE_RANK,
    ) -> None:
        """`fused_kernels`: run the layers with vLLM's fused eager kernels (`vllm_compat.eager_kernels`)
        instead of the plain-torch layers a compiled engine leaves for torch.compile to fuse."""
        self.stack = stack
        self.capture = AttentionCapture(stack)
        self.block_size = block_size
        # KV cache group of each layer: its block table, slot mapping and metadata builder.
        self.layer_groups = list(layer_groups)
        self.group_end = {group: layer for layer, group in enumerate(self.layer_groups)}
        self.build_metadata = build_metadata
        self.window = window
        self.pool_kernel = pool_kernel
        self.fused_kernels = fused_kernels
        # This rank's heads under tensor parallelism: scores summed over heads are summed over the TP group.
        self.shards = shards
        # Steps run through this loop, for the tests and metrics that show decodes never do.
        self.steps_run = 0

    def propagation_layer(self, selection_layer: int, budgeted: bool) -> int:
        """The last layer that still runs every token after a single-pass selection at `selection_layer`."""
        return selection_layer if budgeted else self.group_end[self.layer_groups[selection_layer]]

    def run(
        self,
        steps: Sequence[RequestStep],
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        inputs_embeds: torch.Tensor | None,
        tables: Sequence[StepTables],
    ) -> tuple[torch.Tensor, list[PruneDecision], dict[str, list[torch.Tensor]]]:
        """`tables[g]`: the step's block table of KV cache group g. Returns the final hidden states, the
        decisions and, per auto-budget request, its layers' kept scores (see `LiveRequest.kept_scores`)."""
        self.steps_run += 1
        context = LayerContexts()
        # Every row's slot in each layer's group, kept before the loop replaces the mapping per layer.
        full_slots = [context.slot_mapping(self.stack.layer_name(layer)) for layer in range(self.stack.num_layers)]
        lives = [
            LiveRequest(step, index, positions, self.layer_groups, self.block_size) for index, step in enumerate(steps)
        ]
        pruning = [live for live in lives if live.decision is not None]
        num_real = sum(step.num_rows for step in steps)

        hidden = inputs_embeds[:num_real] if inputs_embeds is not None else self.stack.embed(input_ids[:num_real])
        # Layers update their inputs in place; a re-run needs the untouched embeddings.
        embeddings = hidden.clone() if inputs_embeds is not None else None
        full = hidden.new_zeros((positions.shape[0], hidden.shape[-1]))
        kernels = fused_kernels(self.stack.inner) if self.fused_kernels else contextlib.nullcontext()
        with self.capture, kernels:
            self._run_layers(context, lives, hidden, tables, full_slots, full)
            reruns = [live.for_rerun() for live in lives if live.rerun_rows is not None]
            if reruns:
                self._rerun(context, reruns, input_ids, embeddings, tables, full_slots, full)
        finished = [live for live in pruning if live.rerun_rows is None] + reruns
        for live in finished:
            if live.shares_layers:
                self._keep_layer_shared(live, tables)
        kept_scores = {live.step.req_id: live.kept_scores for live in finished if live.keeps_scores()}
        return full, [live.decision for live in pruning], kept_scores

    def _run_layers(
        self,
        context: LayerContexts,
        lives: list[LiveRequest],
        hidden: torch.Tensor,
        tables: Sequence[StepTables],
        full_slots: Sequence[torch.Tensor],
        full: torch.Tensor,
    ) -> None:
        """Run every layer on `lives` (rows in `hidden`'s order) and scatter the final states into `full`.

        A request whose two-pass policy selects leaves the loop at that layer; the loop ends
        early when none is left.
        """
        residual: torch.Tensor | None = None
        layout_key: tuple | None = None
        for layer_index, layer in enumerate(self.stack.layers):
            group = self.layer_groups[layer_index]
            views = tuple(live.view(group) for live in lives)
            key = (group, views, tuple(live.table_row for live in lives))
            if key != layout_key:
                layout_key = key
                layer_positions = torch.cat([live.positions for live in lives])
                slot_index = torch.cat([live.slot_rows for live in lives])
                slots = full_slots[layer_index][to_device(slot_index, full_slots[layer_index].device)]
                layer_tables = tables[group].select([live.table_row for live in lives])
                common = build_common_metadata(layer_tables, views, slots, layer_positions)
                metadata = self.build_metadata(common, group)
            context.set_layer(self.stack.layer_name(layer_index), metadata, slots)
            hidden, residual = layer(layer_positions, hidden, residual)
            query, key_, value = self.capture.take(layer_index)
            if any(live.decision is not None for live in lives):
                hidden, residual = self._after_layer(
                    layer_index, lives, hidden, residual, query, key_, value, full_slots[layer_index]
                )
                lives = [live for live in lives if live.rerun_rows is None]
                if not lives:
                    return
        full[to_device(torch.cat([live.rows for live in lives]), full.device)] = self.stack.final_norm(hidden, residual)

    def _rerun(
        self,
        context: LayerContexts,
        reruns: list[LiveRequest],
        input_ids: torch.Tensor | None,
        embeddings: torch.Tensor | None,
        tables: Sequence[StepTables],
        full_slots: Sequence[torch.Tensor],
        full: torch.Tensor,
    ) -> None:
        """The second pass of two-pass requests: all layers, selected tokens only, fresh positions."""
        rows = torch.cat([live.rows for live in reruns])
        if embeddings is not None:
            hidden = embeddings[to_device(rows, embeddings.device)]
        else:
            hidden = self.stack.embed(input_ids[to_device(rows, input_ids.device)])
        self._run_layers(context, reruns, hidden, tables, full_slots, full)

    def _after_layer(
        self,
        layer_index: int,
        lives: list[LiveRequest],
        hidden: torch.Tensor,
        residual: torch.Tensor,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        full_slots: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        starts = []
        start = 0
        for live in lives:
            starts.append(start)
            start += live.count
        scored = [
            index
            for index, live in enumerate(lives)
            if live.wants_selection(layer_index)
            or live.wants_budget(layer_index)
            or live.keeps_scores()
            or live.shares_layers
        ]
        if scored:
            began = time.perf_counter()
            stack = self.stack
            scores = StepScores(
                query.view(-1, stack.num_heads, stack.head_size),
                key.view(-1, stack.num_kv_heads, stack.head_size),
                [starts[index] for index in scored],
                [lives[index].count for index in scored],
                stack.scale,
                self.window,
                self.pool_kernel,
                self.shards,
            )
            row_of = {index: row for row, index in enumerate(scored)}
            self._select(layer_index, lives, scores, row_of)
            self._keep_budget(layer_index, lives, scores, row_of, key, value, starts, full_slots)
            self._keep_scores(layer_index, lives, scores, row_of)
            self._add_layer_shares(layer_index, lives, scores, row_of)
            elapsed = time.perf_counter() - began
            for index in scored:
                lives[index].decision.scoring_seconds += elapsed
        for live in lives:
            if live.decision is not None and live.decision.layer_offsets[layer_index] == 0:
                live.decision.layer_offsets[layer_index] = live.kv_offset
        return self._propagate(layer_index, lives, hidden, residual, starts)

    def _select(self, layer_index: int, lives: list[LiveRequest], scores: StepScores, row_of: dict[int, int]) -> None:
        """Feed this layer's scores to every policy still choosing, one batch per policy class."""
        by_class: dict[type, list[int]] = defaultdict(list)
        for index in row_of:
            if lives[index].wants_selection(layer_index):
                by_class[type(lives[index].policy)].append(index)
        last_layer = layer_index == self.stack.num_layers - 1
        for policy_class, members in by_class.items():
            chosen = policy_class.observe_all(
                layer_index, [lives[index].policy for index in members], scores, [row_of[index] for index in members]
            )
            for index, selected in zip(members, chosen, strict=True):
                if selected:
                    self._on_selection(layer_index, lives[index], scores, row_of[index], last_layer)

    def _on_selection(
        self, layer_index: int, live: LiveRequest, scores: StepScores, row: int, last_layer: bool
    ) -> None:
        decision = live.decision
        decision.selection_layer = layer_index
        decision.selected_tokens = min(live.select_keep, live.count)
        # A single pass has nothing left to propagate to after the last layer; a re-run still shrinks the KV.
        if live.select_keep >= live.count or not (live.policy.two_pass or not last_layer):
            return
        ranked = live.policy.token_scores(scores, row)
        local = select_tokens(ranked, live.count, live.select_keep, live.config.window).cpu()
        decision.selected_indices = live.rows[local] - live.step.row_start
        if live.policy.two_pass:
            live.rerun_rows = local
        else:
            live.pending = (self.propagation_layer(layer_index, live.budget_keeps is not None), local)

    def _keep_budget(
        self,
        layer_index: int,
        lives: list[LiveRequest],
        scores: StepScores,
        row_of: dict[int, int],
        key: torch.Tensor,
        value: torch.Tensor,
        starts: list[int],
        full_slots: torch.Tensor,
    ) -> None:
        """Write each budgeted request's kept tokens of this layer to its tail slots, all in one cache write."""
        stack = self.stack
        keys = key.view(-1, stack.num_kv_heads, stack.head_size)
        values = value.view(-1, stack.num_kv_heads, stack.head_size)
        kept_keys, kept_values, slots = [], [], []
        for index, row in row_of.items():
            live = lives[index]
            if not live.wants_budget(layer_index):
                continue
            count, keep = live.count, live.budget_keeps[layer_index]
            ranked = live.budget_scores(scores, row)
            kept = budget_select(ranked, count, keep, live.config.window, stack.num_kv_heads)
            if live.keeps_scores():
                live.kept_scores[layer_index] = kept_past_scores(ranked, kept, keep, live.config.window)
            start = starts[index]
            kept_keys.append(gather_per_head(keys[start : start + count], kept))
            kept_values.append(gather_per_head(values[start : start + count], kept))
            tail = live.step.row_start + live.step.seq_len
            slots.append(full_slots[tail - keep : tail])
            live.decision.layer_offsets[layer_index] = live.step.seq_len - keep
        if slots:
            write_tokens(stack.attentions[layer_index], torch.cat(kept_keys), torch.cat(kept_values), torch.cat(slots))

    def _keep_scores(
        self, layer_index: int, lives: list[LiveRequest], scores: StepScores, row_of: dict[int, int]
    ) -> None:
        """An auto-budget request that keeps all its rows in this layer keeps all their scores."""
        for index, row in row_of.items():
            live = lives[index]
            if live.keeps_scores() and not live.shares_layers and live.kept_scores[layer_index] is None:
                ranked = live.budget_scores(scores, row)
                live.kept_scores[layer_index] = ranked.view(-1, ranked.shape[-1]).clone()

    def _add_layer_shares(
        self, layer_index: int, lives: list[LiveRequest], scores: StepScores, row_of: dict[int, int]
    ) -> None:
        """Add this layer's scores, as shares of its total, to each layer-shared request's sum by prompt token."""
        for index, row in row_of.items():
            live = lives[index]
            if not live.shares_layers:
                continue
            ranked = layer_shares(live.budget_scores(scores, row))
            prompt_rows = live.rows - live.step.row_start
            if live.layer_scores is None:
                live.layer_scores = ranked.new_zeros((*ranked.shape[:-1], live.step.seq_len))
            live.layer_scores[..., to_device(prompt_rows[: ranked.shape[-1]], ranked.device)] += ranked
            live.layer_rows[layer_index] = (live.kv_offset, prompt_rows)

    def _keep_layer_shared(self, live: LiveRequest, tables: Sequence[StepTables]) -> None:
        """Keep one token set in every layer, ranked by the summed shares, among the tokens the last layer ran.

        Each layer's KV is still where the loop wrote it (slots [0, N), or the tail [N - k', N) after a
        selection), so each layer's kept tokens move to the tail [N - B', N) with the in-place compaction.
        An auto-budget request given no budget keeps all its tokens, and per layer the summed shares of
        the tokens that layer holds, for a later shrink.
        """
        stack = self.stack
        num_tokens, window = live.step.seq_len, live.config.window
        device = live.layer_scores.device
        if not live.budgeted:
            for layer, (_, rows) in live.layer_rows.items():
                past = to_device(rows[: len(rows) - window], device)
                live.kept_scores[layer] = live.layer_scores[..., past].reshape(-1, len(past))
            return
        final_rows = live.rows - live.step.row_start
        ranked = live.layer_scores[..., to_device(final_rows[: live.count - window], device)]
        keep = min(live.budget_keeps[0], live.count)
        kept = budget_select(ranked, live.count, keep, window, stack.num_kv_heads)
        kept_prompt = final_rows[kept.cpu()]
        for layer, (offset, rows) in live.layer_rows.items():
            live.decision.layer_offsets[layer] = num_tokens - keep
            if len(rows) == keep:  # a layer after the selection that keeps every selected token, in place
                continue
            attention = stack.attentions[layer]
            slots = offset + torch.searchsorted(rows, kept_prompt)
            slots = to_device(slots.to(torch.int32), attention.kv_cache.device)
            row = tables[self.layer_groups[layer]].block_table[live.table_row]
            dispatch.compact_tail(attention.kv_cache, None, row, slots, num_tokens, layer_layout(attention))
        if live.keeps_scores():
            live.kept_scores[:] = [kept_past_scores(ranked, kept, keep, window)] * len(live.kept_scores)

    def _propagate(
        self,
        layer_index: int,
        lives: list[LiveRequest],
        hidden: torch.Tensor,
        residual: torch.Tensor,
        starts: list[int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Drop the rows the deeper layers no longer run: unselected ones, and two-pass requests."""
        changed = False
        keep_rows = []
        for index, live in enumerate(lives):
            start = starts[index]
            if live.rerun_rows is not None:
                changed = True
            elif live.pending is not None and live.pending[0] == layer_index:
                local = live.pending[1]
                live.pending = None
                keep_rows.append(start + local)
                live.keep(local)
                changed = True
            else:
                keep_rows.append(torch.arange(start, start + live.count))
        if not changed:
            return hidden, residual
        index_tensor = to_device(torch.cat(keep_rows) if keep_rows else torch.empty(0, dtype=torch.long), hidden.device)
        return hidden[index_tensor], residual[index_tensor]
