"""Batched reductions of window histograms: pooling + GQA sum, and the rank variance.

Ranks themselves come from one stable library sort over the padded batch
(`asl_vllm.scoring.paged.batch_ranks`, a radix sort on CUDA); these kernels do
the stencil and the reductions around it for many requests at once. Widths
and the strides that follow them are not specialised on, so the start-up
compile (`asl_vllm.scoring.warmup`) serves every prompt length.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from asl_vllm.scoring.paged import Lengths, as_list


def _lengths_tensor(lengths: Lengths, device: torch.device) -> torch.Tensor:
    if isinstance(lengths, torch.Tensor):
        return lengths.to(device=device, dtype=torch.int32)
    return torch.tensor(as_list(lengths), dtype=torch.int32, device=device)


@triton.jit(do_not_specialize=["width", "stride_hr", "stride_hh", "stride_or", "stride_og"])
def _pool_group_kernel(
    hist_ptr, lengths_ptr, out_ptr, width,
    stride_hr, stride_hh, stride_hm, stride_or, stride_og,
    GROUP: tl.constexpr, KERNEL: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    req = tl.program_id(0)
    kv_head = tl.program_id(1)
    cols = tl.program_id(2) * BLOCK + tl.arange(0, BLOCK)
    length = tl.load(lengths_ptr + req)
    acc = tl.zeros([BLOCK], tl.float32)
    for member in range(GROUP):
        row = hist_ptr + req * stride_hr + (kv_head * GROUP + member) * stride_hh
        for tap in range(KERNEL):
            source = cols + tap - KERNEL // 2
            acc += tl.load(row + source * stride_hm, mask=(source >= 0) & (source < length), other=0.0)
    # Zero padding counts in the mean (count_include_pad): always divide by KERNEL.
    value = tl.where(cols < length, acc / KERNEL, 0.0)
    tl.store(out_ptr + req * stride_or + kv_head * stride_og + cols, value, mask=cols < width)


def pool_and_group(hist: torch.Tensor, lengths: Lengths, kernel: int, num_kv_heads: int) -> torch.Tensor:
    """Same contract as `asl_vllm.scoring.paged.pool_and_group`."""
    num_reqs, num_heads, width = hist.shape
    if kernel < 1 or kernel % 2 == 0 or num_heads % num_kv_heads:
        raise ValueError(f"need an odd kernel and H % G == 0, got {kernel=} {num_heads=} {num_kv_heads=}")
    block = 256
    out = torch.empty(num_reqs, num_kv_heads, width, dtype=torch.float32, device=hist.device)
    if num_reqs and width:
        _pool_group_kernel[(num_reqs, num_kv_heads, triton.cdiv(width, block))](
            hist, _lengths_tensor(lengths, hist.device), out, width, *hist.stride(), out.stride(0), out.stride(1),
            GROUP=num_heads // num_kv_heads, KERNEL=kernel, BLOCK=block,
        )  # fmt: skip
    return out


@triton.jit(do_not_specialize=["stride_rr", "stride_rl", "stride_pr"])
def _rank_variance_kernel(
    ranks_ptr, lengths_ptr, tops_ptr, total_ptr, count_ptr,
    num_layers, chunk, stride_rr, stride_rl, stride_pr,
    LAYERS: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    req = tl.program_id(0)
    part = tl.program_id(1)
    length = tl.load(lengths_ptr + req)
    top = tl.load(tops_ptr + req)
    layers = tl.arange(0, LAYERS)
    layer_ok = layers < num_layers
    total = tl.zeros([BLOCK], tl.float64)
    count = tl.zeros([BLOCK], tl.float64)
    end = tl.minimum(part * chunk + chunk, length)
    for start in range(part * chunk, end, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        ok = layer_ok[:, None] & (cols < end)[None, :]
        ranks = tl.load(ranks_ptr + req * stride_rr + layers[:, None] * stride_rl + cols[None, :], mask=ok, other=0)
        chosen = tl.max(tl.where(ok & (ranks <= top), 1, 0), 0) > 0
        ranks = ranks.to(tl.float64)
        mean = tl.sum(ranks, 0) / num_layers
        deviation = tl.where(ok, (ranks - mean[None, :]) * (ranks - mean[None, :]), 0.0)
        total += tl.where(chosen, tl.sum(deviation, 0), 0.0)
        count += tl.where(chosen, 1.0, 0.0)
    tl.store(total_ptr + req * stride_pr + part, tl.sum(total, 0))
    tl.store(count_ptr + req * stride_pr + part, tl.sum(count, 0))


def batch_rank_variance(ranks: torch.Tensor, lengths: Lengths, tops: Lengths, chunk: int = 8192) -> torch.Tensor:
    """Same contract as `asl_vllm.scoring.paged.batch_rank_variance`; each program reduces `chunk` tokens."""
    num_reqs, num_layers, width = ranks.shape
    if num_layers == 0:
        raise ValueError("ranks must hold at least one layer")
    block = 256
    chunk = max(block, triton.cdiv(chunk, block) * block)
    parts = max(1, triton.cdiv(width, chunk))
    total = torch.zeros(num_reqs, parts, dtype=torch.float64, device=ranks.device)
    count = torch.zeros_like(total)
    ranks = ranks.contiguous()
    if num_reqs and width:
        _rank_variance_kernel[(num_reqs, parts)](
            ranks, _lengths_tensor(lengths, ranks.device), _lengths_tensor(tops, ranks.device), total, count,
            num_layers, chunk, ranks.stride(0), ranks.stride(1), total.stride(0),
            LAYERS=max(2, triton.next_power_of_2(num_layers)), BLOCK=block,
        )  # fmt: skip
    # Fixed-order sums over the parts: the same bits on every run.
    tokens = count.sum(dim=1)
    return torch.where(tokens > 0, total.sum(dim=1) / (tokens * num_layers).clamp(min=1), 0.0)
