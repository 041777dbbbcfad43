"""vLLM general-plugin entry point: runs in every vLLM process, idempotent."""

from __future__ import annotations


def register() -> None:
    """Add the pruner flags and settings to vLLM's engine arguments."""
    from asl_vllm import vllm_patches

    vllm_patches.apply()
