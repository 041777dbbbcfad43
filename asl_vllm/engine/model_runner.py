"""Model runner mixin: the pruning layer loop for a step that prunes a prefill, vLLM's forward for every other.

Subclasses vLLM 0.32's V1 `GPUModelRunner` family (`CPUModelRunner` on the CPU
build). Only a step holding a prefill to be pruned leaves vLLM's own path; the
scheduler says which, with a `PrefillPlan` per such prefill on the step's
`SchedulerOutput` (`asl_vllm.engine.step_plan`), and the runner prunes each as
its plan says, deciding nothing itself. Such a step runs eagerly
(`step_needs_eager`, vLLM's per-step `force_eager` switch) through
`LayerLoop` (`replacement_forward`). Every other step, decodes of pruned
requests included, runs vLLM's forward in its default mode (torch.compile,
CUDA graphs); a pruned request differs there only in its attention metadata
(`OffsetAttentionGroup`, `KVOffsets`) and, for two-pass methods, its RoPE
positions.

Overrides vLLM's public `load_model`, `get_kv_cache_spec`,
`initialize_attn_backend`, `initialize_metadata_builders`, `initialize_kv_cache`, `profile_run` and
`sample_tokens`, and implements the hooks of
`asl_vllm.vllm_compat.model_runner.RunnerHooks` (vLLM's private steps). The
decisions of a step travel to the scheduler on that step's
`ModelRunnerOutput` (`asl_vllm.engine.decision_channel`). Under tensor
parallelism every rank runs this runner on its own heads and, scoring through
the TP group (`HeadShards`), makes the same decisions and keeps the same offsets.
"""

from __future__ import annotations

import functools
from collections import deque
from typing import Any

import torch
from vllm.config import CompilationMode
from vllm.v1.attention.backend import CommonAttentionMetadata
from vllm.v1.kv_cache_interface import KVCacheSpec

from asl_vllm.config import from_vllm_config
from asl_vllm.engine.attention_groups import OffsetAttentionGroup, check_whole_blocks
from asl_vllm.engine.attention_layout import StepTables
from asl_vllm.engine.decision_channel import with_decisions
from asl_vllm.engine.decisions import PruneDecision
from asl_vllm.engine.decoder_stack import DecoderStack
from asl_vllm.engine.kv_offsets import KVOffsets, PrunedKV
from asl_vllm.engine.layer_groups import bucketed_specs
from asl_vllm.engine.layer_loop import LayerLoop, RequestStep
from asl_vllm.engine.prefill_plan import PrefillPlan
from asl_vllm.engine.shrinking import Shrinker
from asl_vllm.engine.step_plan import step_plan
from asl_vllm.scoring.head_shards import tensor_parallel_shards
from asl_vllm.scoring.kv_layout import check_backend
from asl_vllm.scoring.memory import layer_loop_bytes, scoring_transient_bytes
from asl_vllm.scoring.warmup import triton_runs_on, warm_up_kernels
from asl_vllm.vllm_compat.attention_workspace import share_workspace
from asl_vllm.vllm_compat.input_batch import (
    batch_req_ids,
    computed_tokens,
    group_block_table,
    prefilling_rows,
    query_starts,
    request_block_ids,
)
from asl_vllm.vllm_compat.model_runner import RunnerHooks, attention_groups, set_attention_groups

DECISIONS_KEPT = 1024


class PruningRunnerMixin(RunnerHooks):
    """Keeps each pruned request's per-group KV offsets between steps."""

    def load_model(self, *args: Any, **kwargs: Any) -> None:
        super().load_model(*args, **kwargs)
        self.pruner_config = from_vllm_config(self.vllm_config)
        self.pruner_stack = DecoderStack(self.model)
        # Bounded: a server that never asks for them must not accumulate them.
        self.pruner_decisions: deque[PruneDecision] = deque(maxlen=DECISIONS_KEPT)
        self._step_decisions: list[PruneDecision] = []
        # The scheduler's plans for the prefills this step prunes (`step_scheduled`), by request.
        self._step_plans: dict[str, PrefillPlan] = {}
        self._planned_steps: list[RequestStep] | None = None

    def get_kv_cache_spec(self) -> dict[str, KVCacheSpec]:
        """vLLM's specs, tagged with layer buckets so that each bucket is its own KV cache group."""
        num_groups = self.pruner_config.layer_groups or 1
        if num_groups > 1 and self.vllm_config.scheduler_config.disable_hybrid_kv_cache_manager:
            raise RuntimeError(
                f"--kv-layer-groups {num_groups} needs vLLM's hybrid KV cache manager, which is disabled "
                "in this configuration; pass --kv-layer-groups 1"
            )
        names = [self.pruner_stack.layer_name(layer) for layer in range(self.pruner_stack.num_layers)]
        return bucketed_specs(super().get_kv_cache_spec(), names, num_groups)

    def initialize_attn_backend(self, kv_cache_config: Any, *args: Any, **kwargs: Any) -> None:
        super().initialize_attn_backend(kv_cache_config, *args, **kwargs)
        groups = kv_cache_config.kv_cache_groups
        block_sizes = {group.kv_cache_spec.block_size for group in groups}
        if len(block_sizes) != 1 or any(len(attn) != 1 for attn in attention_groups(self)):
            raise RuntimeError("KV pruning needs decoder layers in full-attention KV cache groups of one block size")
        self.kv_offsets = KVOffsets(
            num_groups=len(groups),
            block_size=block_sizes.pop(),
            max_num_reqs=self.max_num_reqs,
            device=self.device,
            # Only FULL graphs replay attention with the tensors of capture; PIECEWISE runs it eagerly.
            always_shift=self.compilation_config.cudagraph_mode.has_full_cudagraphs(),
        )
        set_attention_groups(
            self,
            [[OffsetAttentionGroup.wrap(group, self.kv_offsets) for group in attn] for attn in attention_groups(self)],
        )

    def initialize_metadata_builders(self, *args: Any, **kwargs: Any) -> None:
        """vLLM's builders, with one attention workspace for all KV cache groups (as Model Runner V2 does)."""
        super().initialize_metadata_builders(*args, **kwargs)
        share_workspace(
            builder for groups in attention_groups(self) for group in groups for builder in group.metadata_builders
        )

    def initialize_kv_cache(self, kv_cache_config: Any, *args: Any, **kwargs: Any) -> None:
        super().initialize_kv_cache(kv_cache_config, *args, **kwargs)
        check_backend(*(group.backend.get_name() for groups in attention_groups(self) for group in groups))
        check_whole_blocks(group for groups in attention_groups(self) for group in groups)
        groups = self.kv_cache_config.kv_cache_groups
        group_of = {name: index for index, group in enumerate(groups) for name in group.layer_names}
        stack = self.pruner_stack
        layer_groups = [group_of.get(stack.layer_name(layer)) for layer in range(stack.num_layers)]
        if None in layer_groups:
            raise RuntimeError("KV pruning needs every decoder layer in a KV cache group")
        config = self.pruner_config
        # An eager engine's layers already run the kernels vLLM picks for eager steps: the loop keeps them, so a
        # request decoding beside a pruning prefill gets the same numbers as on vLLM's forward.
        self.layer_loop = LayerLoop(
            stack,
            self.kv_offsets.block_size,
            layer_groups,
            self._build_layer_metadata,
            config.window,
            config.pool_kernel,
            fused_kernels=self.compilation_config.mode != CompilationMode.NONE,
            shards=tensor_parallel_shards(self.model_config.get_total_num_kv_heads()),
        )
        self.shrinker = Shrinker(stack, layer_groups, self.kv_offsets.block_size, config.window)
        # Compile the scoring kernels now, not during the first pruned request.
        warm_up_kernels(
            self.device,
            self.model_config.dtype,
            stack.num_heads,
            stack.num_kv_heads,
            stack.head_size,
            config.window,
            config.pool_kernel,
            config.obs_layers,
        )

    def profile_run(self, *args: Any, **kwargs: Any) -> None:
        """vLLM sizes the KV cache from this run's peak memory: hold, meanwhile, what a pruning prefill allocates
        beside the model's own activations: the loop's buffers for the step's whole token budget, and scoring
        for a prompt of up to max-model-len tokens (a chunked prompt's last step scores all its keys)."""
        stack, config = self.pruner_stack, self.pruner_config
        transient = layer_loop_bytes(
            self.max_num_tokens, self.model_config.get_hidden_size(), self.model_config.dtype
        ) + scoring_transient_bytes(
            max(self.max_num_tokens, self.max_model_len),
            stack.num_heads,
            stack.num_kv_heads,
            stack.head_size,
            config.window,
            config.obs_layers,
            self.model_config.dtype,
            use_triton=triton_runs_on(self.device),
        )
        reserved = torch.empty(transient, dtype=torch.uint8, device=self.device)
        try:
            super().profile_run(*args, **kwargs)
        finally:
            del reserved

    def _build_layer_metadata(self, common: CommonAttentionMetadata, group: int) -> Any:
        return attention_groups(self)[group][0].build_unshifted(common)

    def step_scheduled(self, scheduler_output: Any) -> None:
        """Take the step's prefill plans, and shrink the requests the scheduler shrank before anything runs."""
        self._step_plans, shrinks = step_plan(scheduler_output)
        for req_id, first_slot in shrinks.items():
            block_ids = request_block_ids(self, req_id)
            rows = [torch.tensor(ids, dtype=torch.int32, device=self.device) for ids in block_ids]
            offsets = self.shrinker.shrink(req_id, first_slot, rows)
            previous = self.kv_offsets.requests.get(req_id)
            self.kv_offsets.add(req_id, PrunedKV(tuple(offsets), previous.position_offset if previous else 0))

    def requests_leaving(self, req_ids: list[str]) -> None:
        self.kv_offsets.discard(req_ids)
        self.shrinker.discard(req_ids)

    def batch_updated(self, req_ids: list[str | None]) -> None:
        self.kv_offsets.refresh(req_ids)

    def inputs_prepared(
        self, positions: torch.Tensor, row_of_token: torch.Tensor, seq_lens: torch.Tensor, seq_lens_cpu: torch.Tensor
    ) -> None:
        self.kv_offsets.shift_positions(positions, row_of_token)
        if self.kv_offsets.always_shift:
            num_reqs = len(batch_req_ids(self))
            tables = functools.partial(group_block_table, self, num_reqs=num_reqs)
            self.kv_offsets.prepare_step(seq_lens, seq_lens_cpu, tables, num_reqs)
        self._planned_steps = self._plan_steps()

    def step_needs_eager(self) -> bool:
        return self._planned_steps is not None

    def replacement_forward(
        self, input_ids: torch.Tensor | None, positions: torch.Tensor, inputs_embeds: torch.Tensor | None
    ) -> torch.Tensor | None:
        """The pruning layer loop's hidden states when this step prunes a prefill."""
        steps, self._planned_steps = self._planned_steps, None
        if steps is None:
            return None
        num_reqs = len(steps)
        is_prefilling = prefilling_rows(self, num_reqs)
        tables = [
            StepTables(
                block_table=group_block_table(self, group, num_reqs),
                block_size=self.kv_offsets.block_size,
                is_prefilling=is_prefilling,
            )
            for group in range(len(self.kv_cache_config.kv_cache_groups))
        ]
        hidden, decisions, kept_scores = self.layer_loop.run(steps, input_ids, positions, inputs_embeds, tables)
        for decision in decisions:
            if decision.req_id in kept_scores:
                self.shrinker.track(
                    decision.req_id, decision.num_prompt_tokens, decision.layer_offsets, kept_scores[decision.req_id]
                )
            if decision.pruned:
                self.kv_offsets.add(decision.req_id, PrunedKV(tuple(decision.group_offsets), decision.position_offset))
            self.pruner_decisions.append(decision)
            self._step_decisions.append(decision)
        return hidden

    def sample_tokens(self, *args: Any, **kwargs: Any) -> Any:
        output = super().sample_tokens(*args, **kwargs)
        decisions, self._step_decisions = self._step_decisions, []
        return with_decisions(output, decisions) if decisions else output

    def _plan_steps(self) -> list[RequestStep] | None:
        """This step's requests, each with its plan if the scheduler sent one, when the step prunes a prefill;
        None otherwise (every decode step: one look at the step's plans)."""
        plans, self._step_plans = self._step_plans, {}
        if not plans:
            return None
        req_ids = batch_req_ids(self)
        num_reqs = len(req_ids)
        computed = computed_tokens(self, num_reqs)
        starts = query_starts(self, num_reqs)
        steps = []
        for row, req_id in enumerate(req_ids):
            pruned = self.kv_offsets.requests.get(req_id)
            num_rows = starts[row + 1] - starts[row]
            steps.append(
                RequestStep(
                    req_id,
                    starts[row],
                    num_rows,
                    computed[row] + num_rows,
                    plans.get(req_id),
                    None if pruned is None else pruned.group_offsets,
                )
            )
        return steps

    def pruned_requests_held(self) -> int:
        """Requests whose KV offsets this runner still applies (0 once every pruned request is gone)."""
        return len(self.kv_offsets.requests)

    def take_pruner_decisions(self) -> list[PruneDecision]:
        decisions = list(self.pruner_decisions)
        self.pruner_decisions.clear()
        return decisions
