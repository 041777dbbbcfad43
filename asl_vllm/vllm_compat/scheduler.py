"""vLLM's scheduler with the private steps a pruning scheduler changes turned into named hooks.

vLLM 0.32, `Scheduler` (vllm/v1/core/sched/scheduler.py):
- `_mamba_block_aligned_split(request, num_new_tokens, ...)`: consulted for every
  chunk the scheduler is about to schedule when `need_mamba_block_aligned_split`
  is set; returning 0 stops the waiting loop as with chunked prefill off. Built
  for Mamba's block-aligned chunks, so models with Mamba layers are refused.
  Hook: `prefill_tokens_to_schedule`.
- `_free_request(request, ...)`: frees a finished request and returns the
  `kv_transfer_params` (a KV connector's `request_finished` params) of its last
  output. Hook: `finished_request_params`.
- `_preempt_request(request, ...)`: frees a running request's blocks and puts
  it back in the waiting queue, to be recomputed from its first token (during
  `schedule()`, or when the prefix cache is reset). Hook: `request_preempted`.
- `schedule()`: when `self.kv_cache_manager.allocate_slots(...)` returns None
  for a RUNNING request, vLLM preempts the lowest-priority running request and
  retries. The manager's `allocate_slots` is wrapped on this scheduler's own
  instance: on such a failure it first calls `make_room`, retrying while that
  frees blocks, and `room_made` once a retry succeeds (a preemption avoided).
  Requests still waiting never preempt, so their failures are left as they are.
"""

from __future__ import annotations

from typing import Any

from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.request import RequestStatus


class SchedulerHooks(Scheduler):
    """A subclass implements `prefill_tokens_to_schedule`, `finished_request_params` and `request_preempted`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.has_mamba_layers:
            raise RuntimeError("KV pruning does not support models with Mamba layers")
        self.need_mamba_block_aligned_split = True
        allocate = self.kv_cache_manager.allocate_slots

        def allocate_slots(request: Any, *args: Any, **kwargs: Any) -> Any:
            blocks = allocate(request, *args, **kwargs)
            made_room = False
            while blocks is None and request.status == RequestStatus.RUNNING and self.make_room(request):
                made_room = True
                blocks = allocate(request, *args, **kwargs)
            if made_room and blocks is not None:
                self.room_made(request)
            return blocks

        self.kv_cache_manager.allocate_slots = allocate_slots

    def prefill_tokens_to_schedule(self, request: Any, num_new_tokens: int) -> int:
        """How many of the `num_new_tokens` vLLM would schedule for `request` now; 0 waits for a later step."""
        raise NotImplementedError

    def finished_request_params(self, request: Any, kv_transfer_params: dict[str, Any] | None) -> dict[str, Any] | None:
        """The `kv_transfer_params` of a finished request's last output, given what vLLM (a connector) set."""
        raise NotImplementedError

    def request_preempted(self, request: Any) -> None:
        """`request` was preempted: its blocks are freed and its next step recomputes it from its first token."""
        raise NotImplementedError

    def make_room(self, request: Any) -> bool:
        """`request` (running) cannot get its next slots and vLLM would preempt: True after freeing blocks."""
        return False

    def room_made(self, request: Any) -> None:
        """`request` got its slots thanks to `make_room`: vLLM preempted nothing for it."""

    def _mamba_block_aligned_split(self, request: Any, num_new_tokens: int, *args: Any, **kwargs: Any) -> int:
        return self.prefill_tokens_to_schedule(request, num_new_tokens)

    def _free_request(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        kv_transfer_params, ec_transfer_params = super()._free_request(request, *args, **kwargs)
        return self.finished_request_params(request, kv_transfer_params), ec_transfer_params

    def _preempt_request(self, request: Any, *args: Any, **kwargs: Any) -> None:
        super()._preempt_request(request, *args, **kwargs)
        self.request_preempted(request)
