"""Every KV cache group's metadata builder uses one attention workspace."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from asl_vllm.vllm_compat.attention_workspace import share_workspace


class _FlashInferLike:
    def __init__(self) -> None:
        self._workspace_buffer: torch.Tensor | None = None
        self.allocations = 0

    def _get_workspace_buffer(self) -> torch.Tensor:
        if self._workspace_buffer is None:
            self.allocations += 1
            self._workspace_buffer = torch.zeros(16, dtype=torch.uint8)
        return self._workspace_buffer

    def set_workspace_buffer(self, workspace_buffer: torch.Tensor) -> None:
        self._workspace_buffer = workspace_buffer


class _NoWorkspace:
    pass


def _vllm_source(relative: str) -> str:
    root = Path(importlib.util.find_spec("vllm").origin).parent
    return (root / relative).read_text()


def test_vllm_builders_offer_the_calls_used():
    # Read, not imported: FlashInfer's backend imports flashinfer, absent on the CPU build.
    flashinfer = _vllm_source("v1/attention/backends/flashinfer.py")
    assert "def _get_workspace_buffer(self)" in flashinfer
    assert "def set_workspace_buffer(self, workspace_buffer: torch.Tensor)" in flashinfer
    # Model Runner V2 already shares one workspace across groups the same way.
    assert "builder.set_workspace_buffer(attn_backend_workspace)" in _vllm_source("v1/worker/gpu/attn_utils.py")


def test_ten_groups_allocate_one_workspace():
    builders = [_NoWorkspace(), *(_FlashInferLike() for _ in range(10))]
    assert share_workspace(builders) == 10
    assert sum(builder.allocations for builder in builders[1:]) == 1
    first = builders[1]._get_workspace_buffer()
    assert all(builder._get_workspace_buffer() is first for builder in builders[1:])


def test_backends_without_a_workspace_are_left_alone():
    assert share_workspace([_NoWorkspace(), _NoWorkspace()]) == 0
