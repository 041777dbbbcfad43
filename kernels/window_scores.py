"""Window attention histogram, reading K straight from vLLM's paged cache through the block table.

Two kernels, each over (request, head block, split of the keys):
1. `_split_stats_kernel`: per window row, the running max and normaliser of its
   softmax over the split's keys (an online softmax inside the split);
2. `_histogram_kernel`: combines the splits' (max, normaliser) into each row's
   softmax denominator, recomputes the split's logits for the past keys, and
   sums the probabilities over the window rows of each query head.
A head block is MEMBERS query heads of one KV head (all of its GQA group when
the [MEMBERS * W_P, D_P] query tile fits in registers): their window rows form
one tile, so each key is read once per pass and head block. Splitting the keys
keeps the GPU busy on one long prompt. Head sizes that are not a power of two
are padded to D_P with masked loads; fp8 keys are dequantized by folding the
layer's per-tensor k_scale into the softmax scale.

Integers that change from call to call (split sizes, table and output
strides) are not specialised on, so the kernels compiled by
`asl_vllm.scoring.warmup` at start-up serve every later call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from asl_vllm.scoring.kv_layout import DENSE, KVLayout, key_view

LOG2E = 1.4426950408889634
# Query-tile budget in elements: [MEMBERS * W_P, D_P] stays within what one program keeps in registers.
QUERY_TILE = 32768
_VARYING = ["split_tokens", "stride_tr", "stride_sr", "stride_sg", "stride_ss", "stride_or", "stride_oh"]
_UNALIGNED = ["table_ptr", "seq_lens_ptr"]  # may be rows or slices of the engine's tensors


@triton.jit
def _load_window_queries(
    q_ptr, req, kv_head, first_member, w,
    stride_qr, stride_qw, stride_qh, stride_qd,
    GROUP: tl.constexpr, MEMBERS: tl.constexpr, W_P: tl.constexpr, D: tl.constexpr, D_P: tl.constexpr,
):  # fmt: skip
    """The [MEMBERS * W_P, D_P] tile of window rows (member-major), zero in padding, and its row mask."""
    rows = tl.arange(0, MEMBERS * W_P)
    member = first_member + rows // W_P
    index = rows % W_P
    row_ok = (member < GROUP) & (index < w)
    dims = tl.arange(0, D_P)
    heads = kv_head * GROUP + member
    pointers = q_ptr + req * stride_qr + index[:, None] * stride_qw + heads[:, None] * stride_qh
    if D_P == D:
        mask = row_ok[:, None]
    else:
        mask = row_ok[:, None] & (dims < D)[None, :]
    q = tl.load(pointers + dims[None, :] * stride_qd, mask=mask, other=0.0)
    return q, index, row_ok


@triton.jit
def _logits(
    q, k_ptr, table_ptr, kv_head, cols, col_ok, block_size,
    stride_kb, stride_ks, stride_kh, stride_kd,
    D: tl.constexpr, D_P: tl.constexpr, DOT_FP32: tl.constexpr,
):  # fmt: skip
    """q [ROWS, D_P] . K[cols]^T in fp32 accumulation, K gathered through the block table."""
    block = tl.load(table_ptr + cols // block_size, mask=col_ok, other=0).to(tl.int64)
    dims = tl.arange(0, D_P)
    if D_P == D:
        mask = col_ok[:, None]
    else:
        mask = col_ok[:, None] & (dims < D)[None, :]
    k = tl.load(
        k_ptr
        + block[:, None] * stride_kb
        + (cols % block_size)[:, None] * stride_ks
        + kv_head * stride_kh
        + dims[None, :] * stride_kd,
        mask=mask,
        other=0.0,
    )
    if DOT_FP32:
        return tl.dot(q.to(tl.float32), tl.trans(k.to(tl.float32)), input_precision="ieee")
    return tl.dot(q, tl.trans(k.to(q.dtype)))


@triton.jit(do_not_specialize=_VARYING, do_not_specialize_on_alignment=_UNALIGNED)
def _split_stats_kernel(
    q_ptr, k_ptr, table_ptr, seq_lens_ptr, max_ptr, sum_ptr,
    scale_log2, window, block_size, split_tokens,
    stride_qr, stride_qw, stride_qh, stride_qd,
    stride_kb, stride_ks, stride_kh, stride_kd,
    stride_tr, stride_sr, stride_sg, stride_ss,
    GROUP: tl.constexpr, MEMBERS: tl.constexpr, CHUNKS: tl.constexpr, W_P: tl.constexpr,
    D: tl.constexpr, D_P: tl.constexpr, BLOCK_N: tl.constexpr, DOT_FP32: tl.constexpr,
):  # fmt: skip
    req = tl.program_id(0)
    head_block = tl.program_id(1)
    split = tl.program_id(2)
    kv_head = head_block // CHUNKS
    first_member = (head_block % CHUNKS) * MEMBERS
    num_tokens = tl.load(seq_lens_ptr + req)
    start = split * split_tokens
    if start < num_tokens:
        w = tl.minimum(window, num_tokens)
        q, index, row_ok = _load_window_queries(
            q_ptr, req, kv_head, first_member, w, stride_qr, stride_qw, stride_qh, stride_qd,
            GROUP, MEMBERS, W_P, D, D_P,
        )  # fmt: skip
        row_pos = num_tokens - w + index
        end = tl.minimum(start + split_tokens, num_tokens)
        row_max = tl.full([MEMBERS * W_P], float("-inf"), tl.float32)
        row_sum = tl.zeros([MEMBERS * W_P], tl.float32)
        table = table_ptr + req * stride_tr
        for first in range(start, end, BLOCK_N):
            cols = first + tl.arange(0, BLOCK_N)
            col_ok = cols < end
            logits = _logits(
                q, k_ptr, table, kv_head, cols, col_ok, block_size, stride_kb, stride_ks, stride_kh, stride_kd,
                D, D_P, DOT_FP32,
            ) * scale_log2  # fmt: skip
            visible = row_ok[:, None] & col_ok[None, :] & (cols[None, :] <= row_pos[:, None])
            logits = tl.where(visible, logits, float("-inf"))
            new_max = tl.maximum(row_max, tl.max(logits, 1))
            shift = tl.where(new_max == float("-inf"), 0.0, new_max)
            row_sum = row_sum * tl.exp2(row_max - shift) + tl.sum(tl.exp2(logits - shift[:, None]), 1)
            row_max = new_max
        rows = tl.arange(0, MEMBERS * W_P)
        offset = req * stride_sr + head_block * stride_sg + split * stride_ss + rows
        tl.store(max_ptr + offset, row_max)
        tl.store(sum_ptr + offset, row_sum)


@triton.jit(do_not_specialize=_VARYING, do_not_specialize_on_alignment=_UNALIGNED)
def _histogram_kernel(
    q_ptr, k_ptr, table_ptr, seq_lens_ptr, max_ptr, sum_ptr, out_ptr,
    scale_log2, window, block_size, split_tokens,
    stride_qr, stride_qw, stride_qh, stride_qd,
    stride_kb, stride_ks, stride_kh, stride_kd,
    stride_tr, stride_sr, stride_sg, stride_ss, stride_or, stride_oh,
    GROUP: tl.constexpr, MEMBERS: tl.constexpr, CHUNKS: tl.constexpr, W_P: tl.constexpr,
    D: tl.constexpr, D_P: tl.constexpr, BLOCK_N: tl.constexpr, DOT_FP32: tl.constexpr,
):  # fmt: skip
    req = tl.program_id(0)
    head_block = tl.program_id(1)
    split = tl.program_id(2)
    kv_head = head_block // CHUNKS
    first_member = (head_block % CHUNKS) * MEMBERS
    num_tokens = tl.load(seq_lens_ptr + req)
    w = tl.minimum(window, num_tokens)
    past = num_tokens - w
    start = split * split_tokens
    if start < past:
        q, index, row_ok = _load_window_queries(
            q_ptr, req, kv_head, first_member, w, stride_qr, stride_qw, stride_qh, stride_qd,
            GROUP, MEMBERS, W_P, D, D_P,
        )  # fmt: skip
        rows = tl.arange(0, MEMBERS * W_P)
        stats = req * stride_sr + head_block * stride_sg + rows
        row_max = tl.full([MEMBERS * W_P], float("-inf"), tl.float32)
        row_sum = tl.zeros([MEMBERS * W_P], tl.float32)
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
        members = first_member + tl.arange(0, MEMBERS)
        heads = kv_head * GROUP + members
        table = table_ptr + req * stride_tr
        for first in range(start, end, BLOCK_N):
            cols = first + tl.arange(0, BLOCK_N)
            col_ok = cols < end
            logits = _logits(
                q, k_ptr, table, kv_head, cols, col_ok, block_size, stride_kb, stride_ks, stride_kh, stride_kd,
                D, D_P, DOT_FP32,
            ) * scale_log2  # fmt: skip
            probs = tl.exp2(logits - shift[:, None]) * inverse[:, None]
            per_head = tl.sum(tl.reshape(probs, [MEMBERS, W_P, BLOCK_N]), 1)
            tl.store(
                out_ptr + req * stride_or + heads[:, None] * stride_oh + cols[None, :],
                per_head,
                mask=(members[:, None] < GROUP) & col_ok[None, :],
            )


def _dot_in_fp32(q_win: torch.Tensor, keys: torch.Tensor) -> bool:
    """Whether the kernels upcast q and K before the dot instead of using the 16-bit tensor-core dot.

    The 16-bit dot runs for fp16/bf16 queries over keys of the same dtype or
    fp8 keys (converted to the query dtype, exactly: every fp8 value is a
    bf16 and an fp16 value). fp32 and mixed 16-bit dtypes take fp32, as the
    reference multiplies in fp32. Triton 3.9's interpreter computes bf16 dots
    wrongly, so bf16 is upcast there; the result is the same math, as 16-bit
    products are exact in fp32 and both paths accumulate in fp32.
    """
    if q_win.dtype not in (torch.float16, torch.bfloat16):
        return True
    if keys.dtype != q_win.dtype and keys.element_size() != 1:
        return True
    return q_win.dtype == torch.bfloat16 and os.environ.get("TRITON_INTERPRET") == "1"


@dataclass(frozen=True)
class LaunchPlan:
    """Tile and grid of one launch: MEMBERS query heads of a KV head per program, keys split per program."""

    members: int  # query heads per head block (a power of two)
    window_p: int  # W_P: window rows per query head, padded
    dim_p: int  # D_P: head dim, padded
    chunks: int  # head blocks per KV head
    block_n: int  # keys per tile
    split: int  # keys per program, a multiple of block_n
    num_splits: int

    @property
    def rows(self) -> int:
        return self.members * self.window_p


def launch_plan(
    num_reqs: int,
    max_len: int,
    window: int,
    group: int,
    num_kv_heads: int,
    head_dim: int,
    block_n: int | None = None,
    split_tokens: int | None = None,
) -> LaunchPlan:
    """Tile and grid for these shapes.

    The query tile [MEMBERS * W_P, D_P] stays within QUERY_TILE elements, a
    logit tile [MEMBERS * W_P, BLOCK_N] within 32k, and a long prompt's keys
    split into ~4 programs per SM of an H100, in whole BLOCK_N tiles.
    """
    window_p = max(16, triton.next_power_of_2(window))
    dim_p = max(16, triton.next_power_of_2(head_dim))
    members = min(triton.next_power_of_2(group), max(1, QUERY_TILE // (window_p * dim_p)))
    chunks = triton.cdiv(group, members)
    block_n = block_n or max(16, min(64, QUERY_TILE // (members * window_p)))
    if not split_tokens:
        splits = max(1, 528 // max(num_reqs * num_kv_heads * chunks, 1))
        split_tokens = max(block_n, triton.next_power_of_2(triton.cdiv(max_len, splits)))
    if split_tokens % block_n:
        raise ValueError(f"split_tokens ({split_tokens}) must be a multiple of block_n ({block_n})")
    return LaunchPlan(members, window_p, dim_p, chunks, block_n, split_tokens, triton.cdiv(max_len, split_tokens))


def paged_window_histogram(
    q_win: torch.Tensor,
    k_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    layout: KVLayout = DENSE,
    k_scale: float = 1.0,
    block_n: int | None = None,
    split_tokens: int | None = None,
) -> torch.Tensor:
    """Same contract as `asl_vllm.scoring.paged.paged_window_histogram`.

    `block_n` (keys per tile) and `split_tokens` (keys per program, a multiple
    of block_n) are tuning knobs (see `launch_plan`).
    """
    keys = key_view(k_cache, layout)
    num_reqs, window, num_heads, head_dim = q_win.shape
    _, block_size, num_kv_heads, cache_head_dim = keys.shape
    if cache_head_dim != head_dim or num_heads % num_kv_heads:
        raise ValueError(f"q_win {tuple(q_win.shape)} does not fit the K view {tuple(keys.shape)}")
    lengths = seq_lens.tolist()
    max_len = max(lengths, default=0)
    width = max((n - min(window, n) for n in lengths), default=0)
    out = torch.zeros(num_reqs, num_heads, width, dtype=torch.float32, device=q_win.device)
    if width == 0:
        return out
    group = num_heads // num_kv_heads
    plan = launch_plan(num_reqs, max_len, window, group, num_kv_heads, head_dim, block_n, split_tokens)
    head_blocks = num_kv_heads * plan.chunks
    stats_max = torch.empty(num_reqs, head_blocks, plan.num_splits, plan.rows, dtype=torch.float32, device=q_win.device)
    stats_sum = torch.empty_like(stats_max)
    table = block_table.to(torch.int32)
    # From the host when the caller has the lengths there (no sync either way: they were read above).
    lens = seq_lens.to(device=q_win.device, dtype=torch.int32, non_blocking=True)
    common = dict(
        GROUP=group,
        MEMBERS=plan.members,
        CHUNKS=plan.chunks,
        W_P=plan.window_p,
        D=head_dim,
        D_P=plan.dim_p,
        BLOCK_N=plan.block_n,
        DOT_FP32=_dot_in_fp32(q_win, keys),
        num_warps=8 if plan.rows >= 256 else 4,
    )
    head = (scale * k_scale * LOG2E, window, block_size, plan.split, *q_win.stride(), *keys.stride(), table.stride(0))
    _split_stats_kernel[(num_reqs, head_blocks, plan.num_splits)](
        q_win, keys, table, lens, stats_max, stats_sum, *head, *stats_max.stride()[:3], **common
    )
    _histogram_kernel[(num_reqs, head_blocks, triton.cdiv(width, plan.split))](
        q_win, keys, table, lens, stats_max, stats_sum, out, *head, *stats_max.stride()[:3], *out.stride()[:2],
        **common,
    )  # fmt: skip
    return out
