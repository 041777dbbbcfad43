"""The start-up compile: every kernel the engine uses launches once, on dense keys."""

from __future__ import annotations

import torch

from asl_vllm.scoring.warmup import triton_runs_on, warm_up_kernels

SHAPE = dict(num_heads=9, num_kv_heads=3, head_size=64, window=32, pool_kernel=7, obs_layers=8)


def test_dense_scoring_kernels_launch_once():
    launched = warm_up_kernels(torch.device("cpu"), torch.bfloat16, **SHAPE)
    assert launched == ["window histogram (dense keys)", "pool + GQA sum", "rank variance"]


def test_nothing_runs_where_triton_cannot(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    assert not triton_runs_on(torch.device("cpu"))
    assert warm_up_kernels(torch.device("cpu"), torch.bfloat16, **SHAPE) == []
