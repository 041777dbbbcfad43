"""vLLM's scheduler with the two private steps a pruning scheduler changes turned into named hooks.

vLLM 0.32, `Scheduler` (vllm/v1/core/sched/scheduler.py):
- `_mamba_block_aligned_split(request, num_new_tokens, ...)`: consulted for every
  chunk the scheduler is about to schedule when `need_mamba_block_aligned_split`
  is set; returning 0 stops the waiting loop as with chunked prefill off. Built
  for Mamba's block-aligned chunks, so models with Mamba layers are refused.
  Hook: `prefill_tokens_to_schedule`.
- `_free_request(request, ...)`: frees a finished request and returns the
  `kv_transfer_params` (a KV connector's `request_finished` params) of its last
  output. Hook: `finished_request_params`.
"""

from __future__ import annotations

from typing import Any

from vllm.v1.core.sched.scheduler import Scheduler


class SchedulerHooks(Scheduler):
    """A subclass implements `prefill_tokens_to_schedule` and `finished_request_params`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.has_mamba_layers:
            raise RuntimeError("KV pruning does not support models with Mamba layers")
        self.need_mamba_block_aligned_split = True

    def prefill_tokens_to_schedule(self, request: Any, num_new_tokens: int) -> int:
        """How many of the `num_new_tokens` vLLM would schedule for `request` now; 0 waits for a later step."""
        raise NotImplementedError

    def finished_request_params(self, request: Any, kv_transfer_params: dict[str, Any] | None) -> dict[str, Any] | None:
        """The `kv_transfer_params` of a finished request's last output, given what vLLM (a connector) set."""
        raise NotImplementedError

    def _mamba_block_aligned_split(self, request: Any, num_new_tokens: int, *args: Any, **kwargs: Any) -> int:
        return self.prefill_tokens_to_schedule(request, num_new_tokens)

    def _free_request(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        kv_transfer_params, ec_transfer_params = super()._free_request(request, *args, **kwargs)
        return self.finished_request_params(request, kv_transfer_params), ec_transfer_params
