"""Pruning refuses, at start-up, a backend that reads the manager's KV blocks as smaller kernel blocks."""

from __future__ import annotations

import inspect

import pytest
import torch
from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend
from vllm.v1.kv_cache_interface import FullAttentionSpec
from vllm.v1.worker import utils as worker_utils

from asl_vllm.engine.attention_groups import OffsetAttentionGroup, check_whole_blocks


def _group(kernel_block_size: int | None) -> OffsetAttentionGroup:
    spec = FullAttentionSpec(block_size=64, num_kv_heads=3, head_size=64, dtype=torch.bfloat16)
    return OffsetAttentionGroup(
        backend=CPUAttentionBackend,
        layer_names=["model.layers.0.self_attn.attn"],
        kv_cache_spec=spec,
        kv_cache_group_id=0,
        kernel_block_size=kernel_block_size,
    )


def test_vllm_records_a_split_on_the_group():
    # What `kernel_block_split` reads is what vLLM 0.32 sets when it splits a group's blocks.
    source = inspect.getsource(worker_utils.AttentionGroup.create_metadata_builders)
    assert "self.kernel_block_size = kernel_block_size" in source


def test_whole_blocks_pass():
    check_whole_blocks([_group(None), _group(None)])


def test_split_blocks_are_refused_with_the_block_size_to_pass():
    with pytest.raises(RuntimeError, match=r"splits 64-token blocks into 16-token kernel blocks; pass --block-size 16"):
        check_whole_blocks([_group(None), _group(16)])
