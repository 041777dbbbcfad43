"""The decoder layer loop of a step that holds pruning prefills (every other step runs vLLM's forward).

One step may mix prefills being pruned (`PruningRequest`), decodes of requests
pruned earlier and ordinary requests (ride-along `LiveRequest`s). Before each
layer, every request's rows and KV offset are turned into attention metadata
by vLLM's own builder (rebuilt only when they change). After each layer, the
step's pruning prefills that ask for it are scored together from the layer's
own q and k (`StepScores`: one batched window-score computation per layer,
Triton on CUDA); then each request's pruner decides whether this is its
selection layer (`Pruner.observe_all`, batched per pruner class) and its
budget rule keeps what it keeps (`asl_vllm.engine.budget_rules`: per layer
right away, in one cache write for the step's requests, or after the last
layer). Rows a selection drops leave the loop after their propagation layer;
a two-pass request leaves at its selection layer and re-runs from layer 0 on
its selected tokens once the loop is done (`asl_vllm.engine.pruning_request`).
The final hidden states are scattered back to the full row count, so the
runner's logits indices (each request's last token, always in the window) stay
valid.

Under tensor parallelism every rank runs this loop on its own heads. The
scores that rank tokens are summed over the TP group first (`StepScores`,
`HeadShards`), so every rank makes the same decisions and keeps the same rows,
offsets and slots; only a per-KV-head budget keeps, per KV head, tokens of
that head's own scores. The layers' own collectives then see the same rows on
every rank.

On CUDA the loop waits for the device only where the rule needs a value on
the host: the rank variances of each layer at which an ASL request decides
(`ASL.observe_all`, one read for the step's requests), a selection's kept rows
(how many rows the deeper layers run), and a layer-shared budget's kept set
once per request after the last layer. Row indices, lengths and slots are
built on the host and uploaded asynchronously (`asl_vllm.device_upload`).
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import Any

import torch
from vllm.v1.attention.backend import CommonAttentionMetadata

from asl_vllm.device_upload import to_device
from asl_vllm.engine.attention_layout import StepTables, build_common_metadata
from asl_vllm.engine.budget_rules import RequestLayer, StepCache
from asl_vllm.engine.capture import AttentionCapture
from asl_vllm.engine.decisions import PruneDecision
from asl_vllm.engine.decoder_stack import DecoderStack
from asl_vllm.engine.kept_kv_writes import write_tokens
from asl_vllm.engine.live_request import LiveRequest, RequestStep
from asl_vllm.engine.pruning_request import PruningRequest
from asl_vllm.scoring.head_shards import SINGLE_RANK, HeadShards
from asl_vllm.scoring.step_scores import StepScores
from asl_vllm.vllm_compat.eager_kernels import fused_kernels
from asl_vllm.vllm_compat.forward_context import LayerContexts


class LayerLoop:
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
        self.build_metadata = build_metadata
        self.window = window
        self.pool_kernel = pool_kernel
        self.fused_kernels = fused_kernels
        # This rank's heads under tensor parallelism: scores summed over heads are summed over the TP group.
        self.shards = shards
        # Steps run through this loop, for the tests and metrics that show decodes never do.
        self.steps_run = 0

    def run(
        self,
        steps: Sequence[RequestStep],
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        inputs_embeds: torch.Tensor | None,
        tables: Sequence[StepTables],
    ) -> tuple[torch.Tensor, list[PruneDecision], dict[str, list[torch.Tensor]]]:
        """`tables[g]`: the step's block table of KV cache group g. Returns the final hidden states, the
        decisions and, per auto-budget request, its layers' kept scores (see `BudgetRule.kept_scores`)."""
        self.steps_run += 1
        context = LayerContexts()
        # Every row's slot in each layer's group, kept before the loop replaces the mapping per layer.
        full_slots = [context.slot_mapping(self.stack.layer_name(layer)) for layer in range(self.stack.num_layers)]
        lives = [self._live(step, index, positions) for index, step in enumerate(steps)]
        pruning = [live for live in lives if isinstance(live, PruningRequest)]
        num_real = sum(step.num_rows for step in steps)

        hidden = inputs_embeds[:num_real] if inputs_embeds is not None else self.stack.embed(input_ids[:num_real])
        # Layers update their inputs in place; a re-run needs the untouched embeddings.
        embeddings = hidden.clone() if inputs_embeds is not None else None
        full = hidden.new_zeros((positions.shape[0], hidden.shape[-1]))
        cache = StepCache(self.stack, tables, self.layer_groups)
        kernels = fused_kernels(self.stack.inner) if self.fused_kernels else contextlib.nullcontext()
        with self.capture, kernels:
            self._run_layers(context, lives, hidden, cache, full_slots, full)
            reruns = [request.for_rerun() for request in pruning if request.rerun_rows is not None]
            if reruns:
                self._rerun(context, reruns, input_ids, embeddings, cache, full_slots, full)
        finished = [request for request in pruning if request.rerun_rows is None] + reruns
        for request in finished:
            request.rule.after_loop(request, cache)
        kept_scores = {
            request.step.req_id: request.rule.kept_scores
            for request in finished
            if request.rule.kept_scores is not None
        }
        return full, [request.decision for request in pruning], kept_scores

    def _live(self, step: RequestStep, table_row: int, positions: torch.Tensor) -> LiveRequest:
        if step.plan is None:
            return LiveRequest(step, table_row, positions)
        return PruningRequest(step, table_row, positions, self.layer_groups, self.block_size)

    def _run_layers(
        self,
        context: LayerContexts,
        lives: list[LiveRequest],
        hidden: torch.Tensor,
        cache: StepCache,
        full_slots: Sequence[torch.Tensor],
        full: torch.Tensor,
    ) -> None:
        """Run every layer on `lives` (rows in `hidden`'s order) and scatter the final states into `full`.

        A request whose two-pass pruner selects leaves the loop at that layer; the loop ends
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
                layer_tables = cache.tables[group].select([live.table_row for live in lives])
                common = build_common_metadata(layer_tables, views, slots, layer_positions)
                metadata = self.build_metadata(common, group)
            for live in lives:
                if isinstance(live, PruningRequest):
                    live.before_layer(layer_index, cache)
            context.set_layer(self.stack.layer_name(layer_index), metadata, slots)
            hidden, residual = layer(layer_positions, hidden, residual)
            query, key_, value = self.capture.take(layer_index)
            if any(isinstance(live, PruningRequest) for live in lives):
                starts = list(accumulate((live.count for live in lives), initial=0))[:-1]
                self._after_layer(layer_index, lives, starts, query, key_, value, full_slots[layer_index], cache)
                hidden, residual, lives = self._propagate(layer_index, lives, starts, hidden, residual)
                if not lives:
                    return
        full[to_device(torch.cat([live.rows for live in lives]), full.device)] = self.stack.final_norm(hidden, residual)

    def _rerun(
        self,
        context: LayerContexts,
        reruns: list[PruningRequest],
        input_ids: torch.Tensor | None,
        embeddings: torch.Tensor | None,
        cache: StepCache,
        full_slots: Sequence[torch.Tensor],
        full: torch.Tensor,
    ) -> None:
        """The second pass of two-pass requests: all layers, selected tokens only, fresh positions."""
        rows = torch.cat([request.rows for request in reruns])
        if embeddings is not None:
            hidden = embeddings[to_device(rows, embeddings.device)]
        else:
            hidden = self.stack.embed(input_ids[to_device(rows, input_ids.device)])
        self._run_layers(context, reruns, hidden, cache, full_slots, full)

    def _after_layer(
        self,
        layer_index: int,
        lives: list[LiveRequest],
        starts: list[int],
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        full_slots: torch.Tensor,
        cache: StepCache,
    ) -> None:
        """Score the pruning requests that ask for this layer's scores; call their pruners' and rules' hooks.

        `starts[i]`: the first row of `lives[i]` in the layer's q, k and v. A chunked prompt's keys are read
        from the layer's cache (the step's rows are only its last chunk's).
        """
        scored = [
            (live, start)
            for live, start in zip(lives, starts, strict=True)
            if isinstance(live, PruningRequest) and live.wants_scores(layer_index)
        ]
        if scored:
            began = time.perf_counter()
            stack = self.stack
            scores = StepScores(
                query.view(-1, stack.num_heads, stack.head_size),
                key.view(-1, stack.num_kv_heads, stack.head_size),
                [start for _, start in scored],
                [request.count for request, _ in scored],
                stack.scale,
                self.window,
                self.pool_kernel,
                self.shards,
                [cache.held_keys(layer_index, request) if request.chunked else None for request, _ in scored],
                cache.layer_cache(layer_index),
            )
            self._select(layer_index, [request for request, _ in scored], scores)
            self._keep(layer_index, scored, scores, key, value, full_slots, cache)
            elapsed = time.perf_counter() - began
            for request, _ in scored:
                request.decision.scoring_seconds += elapsed
        for live in lives:
            if isinstance(live, PruningRequest) and live.decision.layer_offsets[layer_index] == 0:
                live.decision.layer_offsets[layer_index] = live.kv_offset

    def _select(self, layer_index: int, requests: list[PruningRequest], scores: StepScores) -> None:
        """Feed this layer's scores (row i: `requests[i]`) to every pruner still choosing, one batch per class."""
        by_class: dict[type, list[int]] = defaultdict(list)
        for row, request in enumerate(requests):
            if request.wants_selection(layer_index):
                by_class[type(request.pruner)].append(row)
        last_layer = layer_index == self.stack.num_layers - 1
        for pruner_type, rows in by_class.items():
            chosen = pruner_type.observe_all(layer_index, [requests[row].pruner for row in rows], scores, rows)
            for row, selected in zip(rows, chosen, strict=True):
                if selected:
                    requests[row].select(layer_index, scores, row, last_layer)

    def _keep(
        self,
        layer_index: int,
        scored: list[tuple[PruningRequest, int]],
        scores: StepScores,
        key: torch.Tensor,
        value: torch.Tensor,
        full_slots: torch.Tensor,
        cache: StepCache,
    ) -> None:
        """Each budget rule's hook after this layer; the tokens they keep now go to the cache in one write."""
        stack = self.stack
        keys = key.view(-1, stack.num_kv_heads, stack.head_size)
        values = value.view(-1, stack.num_kv_heads, stack.head_size)
        writes = []
        for row, (request, start) in enumerate(scored):
            if not request.rule.wants_scores(request, layer_index):
                continue
            step, end = request.step, start + request.count
            layer = RequestLayer(
                layer_index,
                scores,
                row,
                keys[start:end],
                values[start:end],
                full_slots[step.row_start : step.row_start + step.seq_len],
                cache,
            )
            write = request.rule.after_layer(request, layer)
            if write is not None:
                writes.append(write)
        if writes:
            write_tokens(
                stack.attentions[layer_index],
                torch.cat([write.keys for write in writes]),
                torch.cat([write.values for write in writes]),
                torch.cat([write.slots for write in writes]),
            )

    def _propagate(
        self,
        layer_index: int,
        lives: list[LiveRequest],
        starts: list[int],
        hidden: torch.Tensor,
        residual: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, list[LiveRequest]]:
        """Drop the rows the deeper layers no longer run: unselected ones, and two-pass requests' (which
        leave the loop). -> the next layer's hidden states, residual and requests."""
        going_on: list[LiveRequest] = []
        keep_rows = []
        changed = False
        for live, start in zip(lives, starts, strict=True):
            pruning = isinstance(live, PruningRequest)
            if pruning and live.rerun_rows is not None:
                changed = True
                continue
            local = live.propagate(layer_index) if pruning else None
            if local is None:
                keep_rows.append(torch.arange(start, start + live.count))
            else:
                keep_rows.append(start + local)
                changed = True
            going_on.append(live)
        if not changed:
            return hidden, residual, lives
        rows = torch.cat(keep_rows) if keep_rows else torch.empty(0, dtype=torch.long)
        index = to_device(rows, hidden.device)
        return hidden[index], residual[index], going_on
