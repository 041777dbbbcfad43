"""Compile the scoring kernels at start-up, so the first pruned request's TTFT holds no JIT compile.

Triton compiles one binary per specialisation: the constexprs (dtypes, head
size, GQA group, window tile) and what it specialises the other arguments on
(integers equal to 1 or divisible by 16, pointer alignment). The kernels mark
the integers and pointers that change from call to call as not specialised,
and the model fixes the rest, so one tiny launch per kernel with the model's
shapes and tensors laid out as the engine's compiles every binary later calls
use.
"""

from __future__ import annotations

import importlib
import os

import torch

from asl_vllm.scoring import dispatch


def triton_runs_on(device: torch.device) -> bool:
    """Whether the Triton kernels can launch on `device` (CUDA, or CPU tensors in Triton's interpreter)."""
    if device.type == "cuda":
        return dispatch.triton_available()
    return os.environ.get("TRITON_INTERPRET") == "1"


def warm_up_kernels(
    device: torch.device,
    dtype: torch.dtype,
    num_heads: int,
    num_kv_heads: int,
    head_size: int,
    window: int,
    pool_kernel: int,
    obs_layers: int,
) -> list[str]:
    """Launch each scoring kernel the engine uses once with the model's shapes; -> the names of the launches.

    The window histogram over a step's dense keys `[T, G, d]` seen as
    block-size-1 pages (how the engine scores a prefill), pooling + GQA sum and
    the rank variance. `dtype` is the model's (q and dense k). Nothing runs where
    Triton cannot (see `triton_runs_on`): the torch path needs no compile.
    """
    if not triton_runs_on(device):
        return []
    window_scores = importlib.import_module("asl_vllm.kernels.window_scores")
    score_reduce = importlib.import_module("asl_vllm.kernels.score_reduce")
    num_tokens = window + 1
    q_win = torch.zeros(1, window, num_heads, head_size, dtype=dtype, device=device)
    seq_lens = torch.tensor([num_tokens], dtype=torch.int32, device=device)
    keys = torch.zeros(num_tokens, num_kv_heads, head_size, dtype=dtype, device=device)
    table = torch.arange(num_tokens, dtype=torch.int32, device=device).view(1, num_tokens)
    scale = head_size**-0.5
    pages = keys.view(num_tokens, 1, num_kv_heads, head_size)
    hist = window_scores.paged_window_histogram(q_win, pages, table, seq_lens, scale)
    launched = ["window histogram (dense keys)"]
    score_reduce.pool_and_group(hist, [1], pool_kernel, num_kv_heads)
    launched.append("pool + GQA sum")
    ranks = torch.ones(1, obs_layers, 1, dtype=torch.long, device=device)
    score_reduce.batch_rank_variance(ranks, [1], [1])
    launched.append("rank variance")
    return launched
