"""In-place KV compaction: each KV head's kept slots move, K and V, to the tail [end - K, end).

Why it is safe in place (`kept` rows strictly ascending, below `end`): K - 1 - j
kept slots follow kept[g, j], so kept[g, j] <= end - K + j = dst(j). A slot
written for j is therefore either no source at all, or the source of some
j' >= j. One program per KV head walks the tiles of j from the last to the
first: a tile only writes slots read by itself or by tiles already done, and
a barrier between its loads and its stores orders the threads of the tile.
Later (lower) tiles read only slots below first + j, which no earlier tile wrote.
Heads touch disjoint memory, so programs never interfere.

K and V move as raw bits (each dtype viewed as the integer of its width), so
fp8 caches and any NaN payloads are copied unchanged; head sizes that are not a
power of two are padded to D_P with masked loads and stores.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from asl_vllm.scoring.kv_layout import DENSE, KVLayout, as_bits, kv_pair


# The table row and kept list may be slices of larger tensors; counts vary per call.
@triton.jit(
    do_not_specialize=["end_slot", "count", "stride_g"], do_not_specialize_on_alignment=["block_row_ptr", "kept_ptr"]
)
def _compact_kernel(
    k_ptr, v_ptr, block_row_ptr, kept_ptr, end_slot, count, block_size,
    stride_kb, stride_ks, stride_kh, stride_kd,
    stride_vb, stride_vs, stride_vh, stride_vd,
    stride_g,
    D: tl.constexpr, D_P: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    head = tl.program_id(0)
    dims = tl.arange(0, D_P)
    first = end_slot - count
    num_tiles = tl.cdiv(count, BLOCK)
    for step in range(0, num_tiles):
        js = (num_tiles - 1 - step) * BLOCK + tl.arange(0, BLOCK)
        ok = js < count
        if D_P == D:
            mask = ok[:, None]
        else:
            mask = ok[:, None] & (dims < D)[None, :]
        src = tl.load(kept_ptr + head * stride_g + js, mask=ok, other=0)
        dst = first + js
        src_block = tl.load(block_row_ptr + src // block_size, mask=ok, other=0).to(tl.int64)
        dst_block = tl.load(block_row_ptr + dst // block_size, mask=ok, other=0).to(tl.int64)
        src_k = k_ptr + src_block[:, None] * stride_kb + (src % block_size)[:, None] * stride_ks
        src_v = v_ptr + src_block[:, None] * stride_vb + (src % block_size)[:, None] * stride_vs
        keys = tl.load(src_k + head * stride_kh + dims[None, :] * stride_kd, mask=mask)
        values = tl.load(src_v + head * stride_vh + dims[None, :] * stride_vd, mask=mask)
        tl.debug_barrier()
        dst_k = k_ptr + dst_block[:, None] * stride_kb + (dst % block_size)[:, None] * stride_ks
        dst_v = v_ptr + dst_block[:, None] * stride_vb + (dst % block_size)[:, None] * stride_vs
        tl.store(dst_k + head * stride_kh + dims[None, :] * stride_kd, keys, mask=mask)
        tl.store(dst_v + head * stride_vh + dims[None, :] * stride_vd, values, mask=mask)


def compact_tail(
    k_cache: torch.Tensor,
    v_cache: torch.Tensor | None,
    block_row: torch.Tensor,
    kept: torch.Tensor,
    end_slot: int,
    layout: KVLayout = DENSE,
) -> None:
    """Same contract as `asl_vllm.scoring.paged.compact_tail`.

    The precondition (rows strictly ascending, below end_slot) is not checked
    here: that would synchronise with the GPU. `select_tokens`/`snapkv_select`
    produce it; `asl_vllm.scoring.paged.check_compaction` checks it in tests.
    """
    keys, values = kv_pair(k_cache, v_cache, layout)
    _, block_size, num_kv_heads, head_dim = keys.shape
    if kept.dim() != 2 or kept.shape[0] != num_kv_heads or values.shape != keys.shape:
        raise ValueError(f"kept {tuple(kept.shape)} / V {tuple(values.shape)} must match K {tuple(keys.shape)}")
    if kept.shape[1] > end_slot:
        raise ValueError(f"{kept.shape[1]} kept tokens do not fit below slot {end_slot}")
    if kept.shape[1] == 0:
        return
    kept = kept.to(torch.int32).contiguous()
    keys, values = as_bits(keys), as_bits(values)
    _compact_kernel[(num_kv_heads,)](
        keys, values, block_row.to(torch.int32), kept, end_slot, kept.shape[1], block_size,
        *keys.stride(), *values.stride(), kept.stride(0),
        D=head_dim, D_P=triton.next_power_of_2(head_dim), BLOCK=64,
    )  # fmt: skip
