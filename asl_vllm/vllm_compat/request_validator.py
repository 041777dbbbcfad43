"""The pruner's per-request check, chained onto the frontend's own params validator.

vLLM 0.32: `InputProcessor._build_logits_processors_params_validator`
(vllm/v1/engine/input_processor.py), a private method that builds the validator
every request's `SamplingParams` goes through (HTTP 400 on `VLLMValidationError`).
The wrapper adds `asl_vllm.request_validation`'s check against the pruner config
of the engine this frontend serves.
"""

from __future__ import annotations

import functools
from typing import Any

from asl_vllm.config import from_vllm_config
from asl_vllm.request_validation import with_request_check
from asl_vllm.vllm_compat.patching import is_patched, marked


def wrap_request_validator() -> None:
    from vllm.v1.engine.input_processor import InputProcessor

    original = InputProcessor._build_logits_processors_params_validator
    if is_patched(original):
        return

    @marked
    @functools.wraps(original)
    def build_validator(self: Any) -> Any:
        return with_request_check(original(self), from_vllm_config(self.vllm_config))

    InputProcessor._build_logits_processors_params_validator = build_validator
