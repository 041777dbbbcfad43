"""Window attention histogram, reading K straight from vLLM's paged cache through the block table.

Two kernels, each over (request, KV head, split of the keys):
1. `_split_stats_kernel`: per window row, the running max and normaliser of its
   softmax over the split's keys (an online softmax inside the split);
2. `_histogram_kernel`: combines the splits' (max, normaliser) into each row's
   softmax denominator, recomputes the split's logits for the past keys, and
   sums the probabilities over the window rows of each query head.
One program serves all query heads of a KV head (their GROUP x W window rows
form one tile), so every key is read once per pass, not once per query head.
Splitting the keys keeps the GPU busy on one long prompt.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634


@triton.jit
def _load_window_queries(
    q_ptr,
    req,
    kv_head,
    w,
    stride_qr,
    stride_qw,
    stride_qh,
    stride_qd,
    GROUP: tl.constexpr,
    GROUP_P: tl.constexpr,
    W_P: tl.constexpr,
    D: tl.constexpr,
):
    """The [GROUP_P * W_P, D] tile of window rows (member-major), zero in padding rows, and its row mask."""
    rows = tl.arange(0, GROUP_P * W_P)
    member = rows // W_P
    index = rows % W_P
    row_ok = (member < GROUP) & (index < w)
    dims = tl.arange(0, D)
    heads = kv_head * GROUP + member
    q = tl.load(
        q_ptr + req * stride_qr + index[:, None] * stride_qw + heads[:, None] * stride_qh + dims[None, :] * stride_qd,
        mask=row_ok[:, None],
        other=0.0,
    )
    return q, index, row_ok


@triton.jit
def _logits(
    q,
    k_ptr,
    table_ptr,
    kv_head,
    cols,
    col_ok,
    block_size,
    stride_kb,
    stride_ks,
    stride_kh,
    stride_kd,
    D: tl.constexpr,
    DOT_FP32: tl.constexpr,
):
    """q [ROWS, D] . K[cols]^T in fp32 accumulation, K gathered through the block table."""
    block = tl.load(table_ptr + cols // block_size, mask=col_ok, other=0).to(tl.int64)
    dims = tl.arange(0, D)
    k = tl.load(
        k_ptr
        + block[:, None] * stride_kb
        + (cols % block_size)[:, None] * stride_ks
        + kv_head * stride_kh
        + dims[None, :] * stride_kd,
        mask=col_ok[:, None],
        other=0.0,
    )
    if DOT_FP32:
        return tl.dot(q.to(tl.float32), tl.trans(k.to(tl.float32)), input_precision="ieee")
    return tl.dot(q.to(k.dtype), tl.trans(k))


@triton.jit
def _split_stats_kernel(
    q_ptr, k_ptr, table_ptr, seq_lens_ptr, max_ptr, sum_ptr,
    scale_log2, window, block_size, split_tokens,
    stride_qr, stride_qw, stride_qh, stride_qd,
    stride_kb, stride_ks, stride_kh, stride_kd,
    stride_tr, stride_sr, stride_sg, stride_ss,
    GROUP: tl.constexpr, GROUP_P: tl.constexpr, W_P: tl.constexpr, D: tl.constexpr,
    BLOCK_N: tl.constexpr, DOT_FP32: tl.constexpr,
):  # fmt: skip
    req = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    num_tokens = tl.load(seq_lens_ptr + req)
    start = split * split_tokens
    if start < num_tokens:
        w = tl.minimum(window, num_tokens)
        q, index, row_ok = _load_window_queries(
            q_ptr, req, kv_head, w, stride_qr, stride_qw, stride_qh, stride_qd, GROUP, GROUP_P, W_P, D
        )
        row_pos = num_tokens - w + index
        end = tl.minimum(start + split_tokens, num_tokens)
        row_max = tl.full([GROUP_P * W_P], float("-inf"), tl.float32)
        row_sum = tl.zeros([GROUP_P * W_P], tl.float32)
        for first in range(start, end, BLOCK_N):
            cols = first + tl.arange(0, BLOCK_N)
            col_ok = cols < end
            table = table_ptr + req * stride_tr
            logits = _logits(
                q, k_ptr, table, kv_head, cols, col_ok, block_size, stride_kb, stride_ks, stride_kh, stride_kd,
                D, DOT_FP32,
            ) * scale_log2  # fmt: skip
            visible = row_ok[:, None] & col_ok[None, :] & (cols[None, :] <= row_pos[:, None])
            logits = tl.where(visible, logits, float("-inf"))
            new_max = tl.maximum(row_max, tl.max(logits, 1))
            shift = tl.where(new_max == float("-inf"), 0.0, new_max)
            row_sum = row_sum * tl.exp2(row_max - shift) + tl.sum(tl.exp2(logits - shift[:, None]), 1)
            row_max = new_max
        rows = tl.arange(0, GROUP_P * W_P)
        offset = req * stride_sr + kv_head * stride_sg + split * stride_ss + rows
        tl.store(max_ptr + offset, row_max)
        tl.store(sum_ptr + offset, row_sum)


@triton.jit
def _histogram_kernel(
    q_ptr, k_ptr, table_ptr, seq_lens_ptr, max_ptr, sum_ptr, out_ptr,
    scale_log2, window, block_size, split_tokens,
    stride_qr, stride_qw, stride_qh, stride_qd,
    stride_kb, stride_ks, stride_kh, stride_kd,
    stride_tr, stride_sr, stride_sg, stride_ss, stride_or, stride_oh,
    GROUP: tl.constexpr, GROUP_P: tl.constexpr, W_P: tl.constexpr, D: tl.constexpr,
    BLOCK_N: tl.constexpr, DOT_FP32: tl.constexpr,
):  # fmt: skip
    req = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    num_tokens = tl.load(seq_lens_ptr + req)
    w = tl.minimum(window, num_tokens)
    past = num_tokens - w
    start = split * split_tokens
    if start < past:
        q, index, row_ok = _load_window_queries(
            q_ptr, req, kv_head, w, stride_qr, stride_qw, stride_qh, stride_qd, GROUP, GROUP_P, W_P, D
        )
        rows = tl.arange(0, GROUP_P * W_P)
        stats = req * stride_sr + kv_head * stride_sg + rows
        row_max = tl.full([GROUP_P * W_P], float("-inf"), tl.float32)
        row_sum = tl.zeros([GROUP_P * W_P], tl.float32)
        for other in range(0, tl.cdiv(num_tokens, split_tokens)):
            part_max = tl.load(max_ptr + stats + other * stride_ss)
            part_sum = tl.load(sum_ptr + stats + other * stride_ss)
            new_max = tl.maximum(row_max, part_max)
            shift = tl.where(new_max == float("-inf"), 0.0, new_max)
            row_sum = row_sum * tl.exp2(row_max - shift) + part_sum * tl.exp2(part_max - shift)
            row_max = new_max
        shift = tl.where(row_max == float("-inf"), 0.0, row_max)
        inverse = tl.where(row_ok & (row_sum > 0), 1.0 / tl.where(row_sum > 0, row_sum, 1.0), 0.0)
        end = tl.minimum(start + split_tokens, past)
        heads = kv_head * GROUP + tl.arange(0, GROUP_P)
        for first in range(start, end, BLOCK_N):
            cols = first + tl.arange(0, BLOCK_N)
            col_ok = cols < end
            table = table_ptr + req * stride_tr
            logits = _logits(
                q, k_ptr, table, kv_head, cols, col_ok, block_size, stride_kb, stride_ks, stride_kh, stride_kd,
                D, DOT_FP32,
            ) * scale_log2  # fmt: skip
            probs = tl.exp2(logits - shift[:, None]) * inverse[:, None]
            per_head = tl.sum(tl.reshape(probs, [GROUP_P, W_P, BLOCK_N]), 1)
            tl.store(
                out_ptr + req * stride_or + heads[:, None] * stride_oh + cols[None, :],
                per_head,
                mask=(heads[:, None] < kv_head * GROUP + GROUP) & col_ok[None, :],
            )


def _dot_in_fp32(q_win: torch.Tensor, k_cache: torch.Tensor) -> bool:
    """Whether the kernels upcast q and K before the dot instead of using the 16-bit tensor-core dot.

    fp32 caches and mixed dtypes need it (the reference multiplies in fp32).
    Triton 3.9's interpreter also computes bf16 dots wrongly, so bf16 is
    upcast there; the result is the same math, as bf16 x bf16 products are
    exact in fp32 and both paths accumulate in fp32.
    """
    if k_cache.dtype == torch.float32 or q_win.dtype != k_cache.dtype:
        return True
    return k_cache.dtype == torch.bfloat16 and os.environ.get("TRITON_INTERPRET") == "1"


def _split_tokens(max_len: int, programs: int, block_n: int) -> int:
    """Keys per split: enough splits for ~4 programs per SM of an H100, whole BLOCK_N tiles."""
    splits = max(1, 528 // max(programs, 1))
    return max(block_n, triton.next_power_of_2(triton.cdiv(max_len, splits)))


def paged_window_histogram(
    q_win: torch.Tensor,
    k_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    block_n: int | None = None,
    split_tokens: int | None = None,
) -> torch.Tensor:
    """Same contract as `asl_vllm.scoring.paged.paged_window_histogram`.

    `block_n` (keys per tile) and `split_tokens` (keys per program, a multiple
    of block_n) are tuning knobs; by default a tile holds at most 32k logits.
    """
    num_reqs, window, num_heads, head_dim = q_win.shape
    _, block_size, num_kv_heads, cache_head_dim = k_cache.shape
    if cache_head_dim != head_dim or num_heads % num_kv_heads:
        raise ValueError(f"q_win {tuple(q_win.shape)} does not fit k_cache {tuple(k_cache.shape)}")
    if head_dim & (head_dim - 1) or head_dim < 16:
        raise ValueError(f"head_dim must be a power of two >= 16, got {head_dim}")
    lengths = seq_lens.tolist()
    max_len = max(lengths, default=0)
    width = max((n - min(window, n) for n in lengths), default=0)
    out = torch.zeros(num_reqs, num_heads, width, dtype=torch.float32, device=q_win.device)
    if width == 0:
        return out
    group = num_heads // num_kv_heads
    rows = triton.next_power_of_2(group) * max(16, triton.next_power_of_2(window))
    block_n = block_n or max(16, min(64, 32768 // rows))
    split = split_tokens or _split_tokens(max_len, num_reqs * num_kv_heads, block_n)
    if split % block_n:
        raise ValueError(f"split_tokens ({split}) must be a multiple of block_n ({block_n})")
    num_splits = triton.cdiv(max_len, split)
    stats_max = torch.empty(num_reqs, num_kv_heads, num_splits, rows, dtype=torch.float32, device=q_win.device)
    stats_sum = torch.empty_like(stats_max)
    table = block_table.to(torch.int32)
    lens = seq_lens.to(device=q_win.device, dtype=torch.int32)
    common = dict(
        GROUP=group,
        GROUP_P=triton.next_power_of_2(group),
        W_P=max(16, triton.next_power_of_2(window)),
        D=head_dim,
        BLOCK_N=block_n,
        DOT_FP32=_dot_in_fp32(q_win, k_cache),
        num_warps=8 if rows >= 256 else 4,
    )
    head = (scale * LOG2E, window, block_size, split, *q_win.stride(), *k_cache.stride(), table.stride(0))
    _split_stats_kernel[(num_reqs, num_kv_heads, num_splits)](
        q_win, k_cache, table, lens, stats_max, stats_sum, *head, *stats_max.stride()[:3], **common
    )
    _histogram_kernel[(num_reqs, num_kv_heads, triton.cdiv(width, split))](
        q_win, k_cache, table, lens, stats_max, stats_sum, out, *head, *stats_max.stride()[:3], *out.stride()[:2],
        **common,
    )  # fmt: skip
    return out
