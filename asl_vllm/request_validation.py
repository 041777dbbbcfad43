"""HTTP 400 for bad per-request pruner settings, through vLLM's logits-processor hook.

vLLM 0.32 calls `LogitsProcessor.validate_params` on every request in the
frontend and turns its `ValueError` into HTTP 400 (offline: an exception from
`LLM.generate`). That is the one per-request validation seam a plugin has, so
this class is registered as a logits processor (`vllm.logits_processors`
entry point) that validates and otherwise does nothing: it is argmax-invariant
and returns the logits untouched.
"""

from __future__ import annotations

from typing import Any

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor

from asl_vllm.config import PrunerConfig, PrunerConfigError
from asl_vllm.request_config import REQUEST_KEYS, request_config, server_config


class PrunerRequestValidator(LogitsProcessor):
    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        extra_args = sampling_params.extra_args or {}
        if not any(key in REQUEST_KEYS for key in extra_args):
            return
        try:
            request_config(server_config() or PrunerConfig(), extra_args)
        except PrunerConfigError as error:
            raise ValueError(f"vllm_xargs.{error}") from None

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        pass

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        return logits

    def is_argmax_invariant(self) -> bool:
        return True

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        pass
