"""The start-up compile: every kernel the engine uses launches once, on dense keys and on a layer's cache."""

from __future__ import annotations

import pytest
import torch

from asl_vllm.scoring.kv_layout import DENSE, KVLayout
from asl_vllm.scoring.warmup import triton_runs_on, warm_up_kernels

SHAPE = dict(num_heads=9, num_kv_heads=3, head_size=64, window=32, pool_kernel=7, obs_layers=8)


def test_dense_scoring_kernels_launch_once():
    launched = warm_up_kernels(torch.device("cpu"), torch.bfloat16, **SHAPE)
    assert launched == ["window histogram (dense keys)", "pool + GQA sum", "rank variance"]


@pytest.mark.parametrize(
    ("layout", "cache_shape"),
    [
        (KVLayout("FLASH_ATTN"), (4, 3, 16, 128)),
        (KVLayout("TRITON_ATTN", "fp8"), (4, 3, 16, 128)),
        (KVLayout("CPU_ATTN", cpu_isa="vec"), (2, 3, 32, 128)),
    ],
)
def test_a_layer_cache_is_read_and_left_unchanged(layout, cache_shape):
    dtype = torch.uint8 if layout.is_fp8 else torch.bfloat16
    kv_cache = torch.randint(0, 100, cache_shape).to(dtype)
    before = kv_cache.clone()
    launched = warm_up_kernels(torch.device("cpu"), torch.bfloat16, **SHAPE, kv_cache=kv_cache, layout=layout)
    assert launched[-2:] == [f"window histogram ({layout.backend} cache)", f"compaction ({layout.backend} cache)"]
    assert torch.equal(kv_cache, before)


def test_a_cache_needs_its_backends_layout():
    with pytest.raises(ValueError, match="layout"):
        warm_up_kernels(torch.device("cpu"), torch.bfloat16, **SHAPE, kv_cache=torch.zeros(2, 3, 16, 128), layout=DENSE)


def test_nothing_runs_where_triton_cannot(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    assert not triton_runs_on(torch.device("cpu"))
    assert warm_up_kernels(torch.device("cpu"), torch.bfloat16, **SHAPE) == []
