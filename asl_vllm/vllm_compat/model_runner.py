"""vLLM's V1 model runner with the private steps a pruning runner changes turned into named hooks.

vLLM 0.32, `GPUModelRunner` (vllm/v1/worker/gpu_model_runner.py; the CPU
build's `CPUModelRunner` in cpu_model_runner.py subclasses it):
- `_update_states(scheduler_output)`: applies the scheduler's output to the
  persistent batch. Hooks: `step_scheduled` (the step's scheduler output, first),
  `requests_leaving` (finished and preempted requests, before) and
  `batch_updated` (the batch's request ids in row order, after).
- `_prepare_inputs(scheduler_output, ...)`: fills the step's `positions` and
  `req_indices` (each token's batch row), and the slot mapping from the true
  positions. Hook: `inputs_prepared`, which may change the positions in place.
- `_determine_batch_execution_and_padding(..., force_eager=...)`: vLLM's per-step
  choice between eager and CUDA graphs. Hook: `step_needs_eager`.
- `_model_forward(input_ids, positions, intermediate_tensors, inputs_embeds, ...)`:
  the model call of a step. Hook: `replacement_forward`, whose hidden states
  replace vLLM's forward when it returns any.
`RunnerHooks` is mixed in before vLLM's runner class, e.g.
`class Runner(RunnerHooks, CPUModelRunner)`, so its overrides call vLLM's.

State: `attn_groups`, per KV cache group the runner's `AttentionGroup`s (one
per backend), which `initialize_attn_backend` sets up and every later metadata
build reads (`initialize_metadata_builders`, each step's `_build_attention_metadata`):
`attention_groups` reads it, `set_attention_groups` puts the plugin's groups
in its place. The persistent batch the hooks read: `input_batch`.
"""

from __future__ import annotations

from typing import Any

import torch

from asl_vllm.vllm_compat.input_batch import batch_req_ids


class RunnerHooks:
    """A subclass implements the hooks below."""

    def step_scheduled(self, scheduler_output: Any) -> None:
        """The step's scheduler output, before anything of it is applied (the cache is as the last step left it)."""
        raise NotImplementedError

    def requests_leaving(self, req_ids: list[str]) -> None:
        """Finished and preempted requests, before vLLM removes them from the batch."""
        raise NotImplementedError

    def batch_updated(self, req_ids: list[str | None]) -> None:
        """The persistent batch's request ids in row order, once vLLM updated it for the step."""
        raise NotImplementedError

    def inputs_prepared(
        self, positions: torch.Tensor, row_of_token: torch.Tensor, seq_lens: torch.Tensor, seq_lens_cpu: torch.Tensor
    ) -> None:
        """Once vLLM prepared the step's inputs (slot mappings included): the token positions (writable), each
        token's batch row, vLLM's persistent sequence lengths (`GPUModelRunner.seq_lens`, every row) and their
        host upper bounds (`optimistic_seq_lens_cpu`)."""
        raise NotImplementedError

    def step_needs_eager(self) -> bool:
        """Whether this step must run eagerly (no CUDA graph replay)."""
        raise NotImplementedError

    def replacement_forward(
        self, input_ids: torch.Tensor | None, positions: torch.Tensor, inputs_embeds: torch.Tensor | None
    ) -> torch.Tensor | None:
        """The step's hidden states computed here, or None for vLLM's forward."""
        raise NotImplementedError

    def _update_states(self, scheduler_output: Any) -> Any:
        self.step_scheduled(scheduler_output)
        self.requests_leaving([*scheduler_output.finished_req_ids, *(scheduler_output.preempted_req_ids or ())])
        result = super()._update_states(scheduler_output)
        self.batch_updated(batch_req_ids(self))
        return result

    def _prepare_inputs(self, scheduler_output: Any, *args: Any, **kwargs: Any) -> Any:
        result = super()._prepare_inputs(scheduler_output, *args, **kwargs)
        num_tokens = scheduler_output.total_num_scheduled_tokens
        self.inputs_prepared(
            self.positions[:num_tokens], self.req_indices.gpu[:num_tokens], self.seq_lens, self.optimistic_seq_lens_cpu
        )
        return result

    def _determine_batch_execution_and_padding(self, *args: Any, **kwargs: Any) -> Any:
        if self.step_needs_eager():
            kwargs["force_eager"] = True
        return super()._determine_batch_execution_and_padding(*args, **kwargs)

    def _model_forward(
        self,
        input_ids: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        intermediate_tensors: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        **model_kwargs: Any,
    ) -> Any:
        hidden = self.replacement_forward(input_ids, positions, inputs_embeds)
        if hidden is not None:
            return hidden
        return super()._model_forward(
            input_ids=input_ids,
            positions=positions,
            intermediate_tensors=intermediate_tensors,
            inputs_embeds=inputs_embeds,
            **model_kwargs,
        )


def attention_groups(runner: Any) -> list[list[Any]]:
    """Per KV cache group, the runner's attention groups (`GPUModelRunner.attn_groups`, set up by
    `initialize_attn_backend`), which vLLM builds each step's attention metadata with."""
    return runner.attn_groups


def set_attention_groups(runner: Any, groups: list[list[Any]]) -> None:
    """Make vLLM build the metadata of every later step with `groups`, one list per KV cache group, in place
    of its own (`GPUModelRunner.attn_groups`; call right after `initialize_attn_backend`)."""
    runner.attn_groups = groups
