"""vLLM general-plugin entry point: runs in every vLLM process, idempotent."""

from __future__ import annotations


def register() -> None:
    """Add the pruner flags and settings to vLLM's engine arguments, and the pruner check to its frontend."""
    from asl_vllm import vllm_compat

    vllm_compat.apply()
