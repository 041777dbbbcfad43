"""A prefill being pruned in the layer loop: its pruner, its budget rule, its selection and its decision.

The worker turns each `PrefillPlan` of the step into one `PruningRequest`. Its
pruner (`asl_vllm.pruners`) decides which layers it scores and whether a layer
is its selection layer, by which score. Its budget rule
(`asl_vllm.engine.budget_rules`) is how many tokens each layer keeps, and when
they are chosen.

A request whose pruner selects at layer s continues with only its selected
rows, with their original positions, and its deeper layers write their KV
straight into the tail slots [N - k', N). Every layer of a KV cache group must
read the same KV offset (decode then needs one shifted block table per group):
with a budget every layer keeps the same tail anyway, so propagation starts
right after s; without one, the layers after s that share s's group still run
on every token and keep full KV, and propagation starts after the group's last
layer (with one layer per group, that is s itself).

A prompt chunked over several steps is pruned in the step that holds its last
chunk (which holds the window): the earlier chunks ran vLLM's own forward and
left full KV in every layer's cache. The request's rows are then only the
chunk's, while the tokens a layer holds (`held`: prompt indices, in slot order
from `kv_offset`) are the whole prompt; scores read the held keys from the
cache. After a selection, the chunk's unselected rows stop, and before each
deeper layer runs, the earlier chunks' selected tokens in that layer's cache
are moved in place to the head of the kept tail (`before_layer`), so that the
layer sees the same kept KV as a one-step prune; its kept chunk rows write
theirs after them. A one-step prefill is the case of a first chunk holding
the whole prompt.

A two-pass pruner (GemFilter, ASL two-pass) instead leaves the loop at its
selection layer; once the loop is done, the whole model re-runs from layer 0 on
the selected tokens' embeddings with fresh positions 0..k'-1, every layer
writing into the tail slots [N - k', N) (`for_rerun`). The first pass's KV is
overwritten or left in blocks the scheduler frees.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from asl_vllm.budget import kept_tokens
from asl_vllm.device_upload import to_device
from asl_vllm.engine.budget_rules import StepCache, budget_rule
from asl_vllm.engine.decisions import PruneDecision
from asl_vllm.engine.live_request import LiveRequest, RequestStep
from asl_vllm.pruners import Pruner, make_pruner
from asl_vllm.scoring.reference import select_tokens
from asl_vllm.scoring.step_scores import StepScores


class PruningRequest(LiveRequest):
    """A live request whose step is its whole prefill, to prune as its `PrefillPlan` says."""

    def __init__(
        self,
        step: RequestStep,
        table_row: int,
        positions: torch.Tensor,
        layer_groups: Sequence[int],
        block_size: int,
    ) -> None:
        super().__init__(step, table_row, positions)
        assert step.plan is not None, "only a planned prefill is pruned"
        plan = step.plan
        # Prompt tokens earlier chunks left in the cache; the step's rows are the tokens after them.
        self.computed = step.seq_len - step.num_rows
        # Prompt indices of the tokens the current layer holds, in slot order from `kv_offset`.
        self.held = torch.arange(step.seq_len)
        # Earlier chunks' selected tokens, still at their own slots in the layers after the propagation layer:
        # (first such layer, their slots), moved to the kept tail before each of those layers runs.
        self.cached_kept: tuple[int, torch.Tensor] | None = None
        self.config = plan.config
        self.pruner: Pruner = make_pruner(plan.config)
        self.rule = budget_rule(plan, layer_groups, block_size)
        self.layer_groups = list(layer_groups)
        self.select_keep = kept_tokens(step.seq_len, plan.config.select_k, block_size)
        self.decision = PruneDecision(
            req_id=step.req_id,
            pruner=plan.config.pruner,
            num_prompt_tokens=plan.num_prompt_tokens,
            two_pass=plan.config.two_pass,
            layer_offsets=[0] * len(layer_groups),
            layer_groups=list(layer_groups),
            kv_budget=plan.config.kv_budget,
            budget_auto=plan.keeps_scores,
            prefill_steps=plan.prefill_steps,
        )
        # A single-pass selection waiting for its propagation layer: (that layer, local rows kept).
        self.pending: tuple[int, torch.Tensor] | None = None
        # Set when a two-pass pruner selected: the local rows to re-run; the request leaves this pass.
        self.rerun_rows: torch.Tensor | None = None

    def wants_selection(self, layer: int) -> bool:
        return self.pending is None and self.pruner.wants_scores(layer)

    def wants_scores(self, layer: int) -> bool:
        """Whether the loop scores this request's rows after `layer`, for its pruner or its budget rule."""
        return self.wants_selection(layer) or self.rule.wants_scores(self, layer)

    def propagation_layer(self, selection_layer: int) -> int:
        """The last layer that still runs every token after a single-pass selection at `selection_layer`."""
        if self.rule.has_budget:
            return selection_layer
        group = self.layer_groups[selection_layer]
        return max(layer for layer, each in enumerate(self.layer_groups) if each == group)

    @property
    def chunked(self) -> bool:
        """Whether earlier steps computed part of the prompt (its keys are read from the cache)."""
        return self.computed > 0

    @property
    def held_count(self) -> int:
        return len(self.held)

    def select(self, layer: int, scores: StepScores, row: int, last_layer: bool) -> None:
        """`layer` is this request's selection layer (row `row` of `scores`): choose the tokens that go on."""
        decision = self.decision
        decision.selection_layer = layer
        decision.selected_tokens = min(self.select_keep, self.held_count)
        # A single pass has nothing left to propagate to after the last layer; a re-run still shrinks the KV.
        if self.select_keep >= self.held_count or (last_layer and not self.pruner.two_pass):
            return
        ranked = self.pruner.token_scores(scores, row)
        local = select_tokens(ranked, self.held_count, self.select_keep, self.config.window).cpu()
        decision.selected_indices = self.held[local]
        if self.pruner.two_pass:
            self.rerun_rows = local
        else:
            self.pending = (self.propagation_layer(layer), local)

    def propagate(self, layer: int) -> torch.Tensor | None:
        """After `layer`: the local rows that go on, if this is the request's propagation layer (else None)."""
        if self.pending is None or self.pending[0] != layer:
            return None
        kept = self.held[self.pending[1]]
        self.pending = None
        # Every chunk row runs up to the propagation layer: row i of the request is prompt token computed + i.
        local = kept[kept >= self.computed] - self.computed
        self.keep(local, kept)
        if self.chunked:
            self.cached_kept = (layer + 1, kept[kept < self.computed])
        return local

    def keep(self, local: torch.Tensor, held: torch.Tensor) -> None:
        """Continue with the local rows `local`, holding the prompt tokens `held` (ascending) in the tail slots."""
        step = self.step
        self.rows = self.rows[local]
        self.positions = self.positions[to_device(local, self.positions.device)]
        # The rows are the last of the held tokens: their slots end the request's range.
        end = step.row_start + step.num_rows
        self.slot_rows = torch.arange(end - len(local), end)
        self.held = held
        self.kv_offset = step.seq_len - len(held)

    def before_layer(self, layer: int, cache: StepCache) -> None:
        """Before a layer after the propagation layer runs: move the earlier chunks' kept tokens in its cache
        to the head of the kept tail, the chunk's kept rows then write theirs after them."""
        if self.cached_kept is None or layer < self.cached_kept[0] or not len(self.cached_kept[1]):
            return
        slots = self.cached_kept[1].view(1, -1).expand(cache.num_kv_heads, -1)
        cache.compact_tail(layer, self.table_row, slots, self.step.seq_len - self.count)

    def for_rerun(self) -> PruningRequest:
        """This request's second pass: the selected rows from layer 0, positions 0..k'-1, tail slots."""
        assert self.rerun_rows is not None and not self.chunked, "a two-pass prefill runs whole"
        rerun = copy.copy(self)
        rerun.rows = self.rows[self.rerun_rows]
        rerun.positions = torch.arange(len(self.rerun_rows), device=self.positions.device)
        selected = torch.arange(len(self.rerun_rows))
        rerun.keep(selected, self.held[self.rerun_rows])
        rerun.rerun_rows = None
        rerun.pruner = Pruner(self.config)  # the base pruner never selects
        rerun.rule.restart()  # the re-run's layers hold other tokens than the first pass's
        self.decision.position_offset = rerun.kv_offset
        return rerun
