"""Decode attention over a compacted cache equals attention over the kept tokens, computed directly.

Uses vLLM's own CPU attention kernels and cache-write op; only the attention
layer object around the backend impl is a stand-in.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from vllm import _custom_ops as ops
from vllm.config import VllmConfig, set_current_vllm_config
from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackendImpl, _get_attn_isa

from asl_vllm.budget import tail_offset
from asl_vllm.engine.attention_layout import RequestView, StepTables, build_common_metadata
from asl_vllm.engine.kept_kv_writes import gather_per_head, write_tokens

HEAD_SIZE = 64
DTYPE = torch.float32


def _layer(num_heads: int, num_kv_heads: int, num_blocks: int, block_size: int) -> SimpleNamespace:
    config = VllmConfig()
    config.model_config = SimpleNamespace(dtype=DTYPE)
    with set_current_vllm_config(config):
        impl = CPUAttentionBackendImpl(num_heads, HEAD_SIZE, HEAD_SIZE**-0.5, num_kv_heads, None, None, "auto")
    return SimpleNamespace(
        impl=impl,
        isa=_get_attn_isa(DTYPE, block_size, HEAD_SIZE),
        _k_scale_float=1.0,
        _v_scale_float=1.0,
        kv_cache=torch.zeros(num_blocks, num_kv_heads, block_size, 2 * HEAD_SIZE, dtype=DTYPE),
    )


def _slots(block_row: torch.Tensor, positions: torch.Tensor, block_size: int) -> torch.Tensor:
    return (block_row[positions // block_size] * block_size + positions % block_size).long()


def _decode(layer, query, block_table, views, block_size, slots) -> torch.Tensor:
    common = build_common_metadata(
        StepTables(block_table, block_size, torch.zeros(len(views), dtype=torch.bool)),
        views,
        slots,
        torch.zeros(len(views), dtype=torch.long),
    )
    impl = layer.impl
    num_blocks, num_kv_heads, _, _ = layer.kv_cache.shape
    kv = layer.kv_cache.view(num_blocks, num_kv_heads, 2 * block_size, HEAD_SIZE)
    key_cache, value_cache = kv.chunk(2, dim=2)
    metadata = ops.cpu_attn_get_scheduler_metadata(
        num_reqs=len(views),
        num_heads=impl.num_heads,
        num_kv_heads=impl.num_kv_heads,
        head_dim=HEAD_SIZE,
        seq_lens=common.seq_lens,
        dtype=DTYPE,
        query_start_loc=common.query_start_loc,
        causal=True,
        sliding_window_size=-1,
        isa=layer.isa,
        enable_kv_split=False,
    )
    output = torch.empty_like(query)
    ops.cpu_attention_with_kv_cache(
        query=query,
        key_cache=key_cache,
        value_cache=value_cache,
        output=output,
        query_start_loc=common.query_start_loc,
        seq_lens=common.seq_lens,
        scale=impl.scale,
        causal=True,
        alibi_slopes=None,
        sliding_window=-1,
        block_table=common.block_table_tensor,
        softcap=0,
        scheduler_metadata=metadata,
        s_aux=None,
    )
    return output


def _reference(query, keys, values, num_kv_heads) -> torch.Tensor:
    """query[H, d]; keys/values[G] lists of [n_g, d] -> out[H, d]."""
    num_heads = query.shape[0]
    group = num_heads // num_kv_heads
    out = []
    for head in range(num_heads):
        k, v = keys[head // group], values[head // group]
        weights = torch.softmax((k @ query[head]) * HEAD_SIZE**-0.5, dim=0)
        out.append(weights @ v)
    return torch.stack(out)


@pytest.mark.parametrize(("num_heads", "num_kv_heads"), [(4, 4), (9, 3), (8, 2), (8, 1)])
@pytest.mark.parametrize(("num_tokens", "keep", "block_size"), [(700, 200, 32), (1000, 256, 128), (333, 40, 32)])
def test_decode_after_compaction_reads_exactly_the_kept_tokens(num_heads, num_kv_heads, num_tokens, keep, block_size):
    generator = torch.Generator().manual_seed(num_tokens + num_heads)
    blocks_per_req = (num_tokens + 1) // block_size + 2
    layer = _layer(num_heads, num_kv_heads, 2 * blocks_per_req + 1, block_size)
    # Two requests with interleaved, non-contiguous blocks; only the first is compacted.
    block_table = torch.stack(
        [torch.arange(1, 2 * blocks_per_req, 2), torch.arange(2, 2 * blocks_per_req + 1, 2)]
    ).int()[:, :blocks_per_req]
    keys = torch.randn(2, num_tokens, num_kv_heads, HEAD_SIZE, generator=generator)
    values = torch.randn(2, num_tokens, num_kv_heads, HEAD_SIZE, generator=generator)
    positions = torch.arange(num_tokens)
    for req in range(2):
        layer.impl.do_kv_cache_update(
            layer, keys[req], values[req], layer.kv_cache, _slots(block_table[req], positions, block_size)
        )

    offset = tail_offset(num_tokens, keep, block_size)
    kept_count = num_tokens - offset
    kept = torch.stack(
        [torch.sort(torch.randperm(num_tokens, generator=generator)[:kept_count]).values for _ in range(num_kv_heads)]
    )
    tail = _slots(block_table[0], torch.arange(offset, num_tokens), block_size)
    write_tokens(layer, gather_per_head(keys[0], kept), gather_per_head(values[0], kept), tail)

    # One decode token per request at its natural position N.
    new_k = torch.randn(2, 1, num_kv_heads, HEAD_SIZE, generator=generator)
    new_v = torch.randn(2, 1, num_kv_heads, HEAD_SIZE, generator=generator)
    decode_slots = torch.cat([_slots(block_table[req], torch.tensor([num_tokens]), block_size) for req in range(2)])
    layer.impl.do_kv_cache_update(layer, new_k[:, 0], new_v[:, 0], layer.kv_cache, decode_slots)
    query = torch.randn(2, num_heads, HEAD_SIZE, generator=generator)
    views = (
        RequestView(num_rows=1, seq_len=num_tokens + 1, kv_offset=offset),
        RequestView(num_rows=1, seq_len=num_tokens + 1, kv_offset=0),
    )
    got = _decode(layer, query, block_table, views, block_size, decode_slots)

    pruned_keys = [torch.cat([keys[0, kept[g], g], new_k[0, :, g]]) for g in range(num_kv_heads)]
    pruned_values = [torch.cat([values[0, kept[g], g], new_v[0, :, g]]) for g in range(num_kv_heads)]
    full_keys = [torch.cat([keys[1, :, g], new_k[1, :, g]]) for g in range(num_kv_heads)]
    full_values = [torch.cat([values[1, :, g], new_v[1, :, g]]) for g in range(num_kv_heads)]
    torch.testing.assert_close(
        got[0], _reference(query[0], pruned_keys, pruned_values, num_kv_heads), atol=2e-5, rtol=1e-4
    )
    torch.testing.assert_close(got[1], _reference(query[1], full_keys, full_values, num_kv_heads), atol=2e-5, rtol=1e-4)


def test_gather_per_head_picks_each_heads_own_tokens():
    tokens = torch.arange(5 * 2 * 1, dtype=torch.float32).view(5, 2, 1)
    kept = torch.tensor([[0, 3], [1, 4]])
    out = gather_per_head(tokens, kept)
    assert out[:, 0, 0].tolist() == [0.0, 6.0]
    assert out[:, 1, 0].tolist() == [3.0, 9.0]
