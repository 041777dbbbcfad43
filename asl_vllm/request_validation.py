"""HTTP 400 for bad per-request pruner settings, at vLLM's per-request admission check.

vLLM 0.32's `InputProcessor` (the frontend of `vllm serve` and of `LLM`) builds one
params validator from its `VllmConfig` and runs it on every request's
`SamplingParams`; the OpenAI server answers its `VLLMValidationError` with HTTP 400
(offline: an exception from `LLM.generate`). `asl_vllm.vllm_compat.request_validator`
chains `check_request` onto that validator with the pruner config of the engine
the frontend serves, so each frontend checks requests against its own engine's
settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from vllm.exceptions import VLLMValidationError

from asl_vllm.config import PrunerConfig, PrunerConfigError
from asl_vllm.request_config import request_config

if TYPE_CHECKING:
    from vllm import SamplingParams


def check_request(server: PrunerConfig, sampling_params: SamplingParams) -> None:
    """Raise VLLMValidationError naming the `vllm_xargs` field when a request's pruner settings are bad."""
    try:
        request_config(server, sampling_params.extra_args)
    except PrunerConfigError as error:
        raise VLLMValidationError(f"vllm_xargs.{error}") from None


def with_request_check(
    validate: Callable[[SamplingParams], None], server: PrunerConfig
) -> Callable[[SamplingParams], None]:
    """vLLM's params validator followed by `check_request` against `server`."""

    def validate_with_pruner(sampling_params: SamplingParams) -> None:
        validate(sampling_params)
        check_request(server, sampling_params)

    return validate_with_pruner
