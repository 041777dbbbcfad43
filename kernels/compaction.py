"""In-place KV compaction: each KV head's kept slots move, K and V, to the tail [end - K, end).

Why it is safe in place (`kept` rows strictly ascending, below `end`): K - 1 - j
kept slots follow kept[g, j], so kept[g, j] <= end - K + j = dst(j). A slot
written for j is therefore either no source at all, or the source of some
j' >= j. One program per KV head walks the tiles of j from the last to the
first: a tile only writes slots read by itself or by tiles already done, and
a barrier between its loads and its stores orders the threads of the tile.
Later (lower) tiles read only slots below first + j, which no earlier tile wrote.
Heads touch disjoint memory, so programs never interfere.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _compact_kernel(
    k_ptr, v_ptr, block_row_ptr, kept_ptr, end_slot, count, block_size,
    stride_kb, stride_ks, stride_kh, stride_kd,
    stride_vb, stride_vs, stride_vh, stride_vd,
    stride_g,
    D: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    head = tl.program_id(0)
    dims = tl.arange(0, D)
    first = end_slot - count
    num_tiles = tl.cdiv(count, BLOCK)
    for step in range(0, num_tiles):
        js = (num_tiles - 1 - step) * BLOCK + tl.arange(0, BLOCK)
        ok = js < count
        src = tl.load(kept_ptr + head * stride_g + js, mask=ok, other=0)
        dst = first + js
        src_block = tl.load(block_row_ptr + src // block_size, mask=ok, other=0).to(tl.int64)
        dst_block = tl.load(block_row_ptr + dst // block_size, mask=ok, other=0).to(tl.int64)
        src_k = k_ptr + src_block[:, None] * stride_kb + (src % block_size)[:, None] * stride_ks
        src_v = v_ptr + src_block[:, None] * stride_vb + (src % block_size)[:, None] * stride_vs
        keys = tl.load(src_k + head * stride_kh + dims[None, :] * stride_kd, mask=ok[:, None])
        values = tl.load(src_v + head * stride_vh + dims[None, :] * stride_vd, mask=ok[:, None])
        tl.debug_barrier()
        dst_k = k_ptr + dst_block[:, None] * stride_kb + (dst % block_size)[:, None] * stride_ks
        dst_v = v_ptr + dst_block[:, None] * stride_vb + (dst % block_size)[:, None] * stride_vs
        tl.store(dst_k + head * stride_kh + dims[None, :] * stride_kd, keys, mask=ok[:, None])
        tl.store(dst_v + head * stride_vh + dims[None, :] * stride_vd, values, mask=ok[:, None])


def compact_tail(
    k_cache: torch.Tensor, v_cache: torch.Tensor, block_row: torch.Tensor, kept: torch.Tensor, end_slot: int
) -> None:
    """Same contract as `asl_vllm.scoring.paged.compact_tail`.

    The precondition (rows strictly ascending, below end_slot) is not checked
    here: that would synchronise with the GPU. `select_tokens`/`snapkv_select`
    produce it; `asl_vllm.scoring.paged.check_compaction` checks it in tests.
    """
    _, block_size, num_kv_heads, head_dim = k_cache.shape
    if kept.dim() != 2 or kept.shape[0] != num_kv_heads or v_cache.shape != k_cache.shape:
        raise ValueError(f"kept {tuple(kept.shape)} / v_cache must match k_cache {tuple(k_cache.shape)}")
    if kept.shape[1] > end_slot:
        raise ValueError(f"{kept.shape[1]} kept tokens do not fit below slot {end_slot}")
    if head_dim & (head_dim - 1):
        raise ValueError(f"head_dim must be a power of two, got {head_dim}")
    if kept.shape[1] == 0:
        return
    kept = kept.to(torch.int32).contiguous()
    _compact_kernel[(num_kv_heads,)](
        k_cache, v_cache, block_row.to(torch.int32), kept, end_slot, kept.shape[1], block_size,
        *k_cache.stride(), *v_cache.stride(), kept.stride(0),
        D=head_dim, BLOCK=64,
    )  # fmt: skip
