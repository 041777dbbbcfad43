"""A prefill being pruned in the layer loop: its pruner, its budget rule, its selection and its decision.

The worker turns each `PrefillPlan` of the step into one `PruningRequest`. Its
pruner (`asl_vllm.policies`) is the policy: which layers it scores and whether
a layer is its selection layer, by which score. Its budget rule
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
from asl_vllm.engine.budget_rules import budget_rule
from asl_vllm.engine.decisions import PruneDecision
from asl_vllm.engine.live_request import LiveRequest, RequestStep
from asl_vllm.policies import Pruner, make_policy
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
        self.config = plan.config
        self.policy: Pruner = make_policy(plan.config)
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
        )
        # A single-pass selection waiting for its propagation layer: (that layer, local rows kept).
        self.pending: tuple[int, torch.Tensor] | None = None
        # Set when a two-pass pruner selected: the local rows to re-run; the request leaves this pass.
        self.rerun_rows: torch.Tensor | None = None

    def wants_selection(self, layer: int) -> bool:
        return self.pending is None and self.policy.wants_scores(layer)

    def wants_scores(self, layer: int) -> bool:
        """Whether the loop scores this request's rows after `layer`, for its pruner or its budget rule."""
        return self.wants_selection(layer) or self.rule.wants_scores(self, layer)

    def propagation_layer(self, selection_layer: int) -> int:
        """The last layer that still runs every token after a single-pass selection at `selection_layer`."""
        if self.rule.has_budget:
            return selection_layer
        group = self.layer_groups[selection_layer]
        return max(layer for layer, each in enumerate(self.layer_groups) if each == group)

    def select(self, layer: int, scores: StepScores, row: int, last_layer: bool) -> None:
        """`layer` is this request's selection layer (row `row` of `scores`): choose the rows that go on."""
        decision = self.decision
        decision.selection_layer = layer
        decision.selected_tokens = min(self.select_keep, self.count)
        # A single pass has nothing left to propagate to after the last layer; a re-run still shrinks the KV.
        if self.select_keep >= self.count or (last_layer and not self.policy.two_pass):
            return
        ranked = self.policy.token_scores(scores, row)
        local = select_tokens(ranked, self.count, self.select_keep, self.config.window).cpu()
        decision.selected_indices = self.rows[local] - self.step.row_start
        if self.policy.two_pass:
            self.rerun_rows = local
        else:
            self.pending = (self.propagation_layer(layer), local)

    def propagate(self, layer: int) -> torch.Tensor | None:
        """After `layer`: the local rows that go on, if this is the request's propagation layer (else None)."""
        if self.pending is None or self.pending[0] != layer:
            return None
        local = self.pending[1]
        self.pending = None
        self.keep(local)
        return local

    def keep(self, local: torch.Tensor) -> None:
        """Continue with the selected local rows; their KV goes to the request's tail slots."""
        step = self.step
        keep = len(local)
        self.rows = self.rows[local]
        self.positions = self.positions[to_device(local, self.positions.device)]
        self.slot_rows = torch.arange(step.row_start + step.seq_len - keep, step.row_start + step.seq_len)
        self.kv_offset = step.seq_len - keep

    def for_rerun(self) -> PruningRequest:
        """This request's second pass: the selected rows from layer 0, positions 0..k'-1, tail slots."""
        assert self.rerun_rows is not None
        rerun = copy.copy(self)
        rerun.rows = self.rows[self.rerun_rows]
        rerun.positions = torch.arange(len(self.rerun_rows), device=self.positions.device)
        rerun.keep(torch.arange(len(self.rerun_rows)))
        rerun.rerun_rows = None
        rerun.policy = Pruner(self.config)  # the base pruner never selects
        rerun.rule.restart()  # the re-run's layers hold other tokens than the first pass's
        self.decision.position_offset = rerun.kv_offset
        return rerun
