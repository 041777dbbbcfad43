"""What the layout module accepts and refuses; the views themselves are checked against vLLM's backends in
`tests/kernels/test_backend_layouts.py`."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from asl_vllm.scoring.kv_layout import (
    DENSE,
    KVLayout,
    TiledPages,
    check_backend,
    key_view,
    kv_cache_dtype_problem,
    kv_pair,
    kv_views,
    layer_layout,
)


@pytest.mark.parametrize("name", ["FLEX_ATTENTION", "TREE_ATTN", "ROCM_ATTN", "FLASHMLA", "flash_attn"])
def test_unknown_backends_are_refused_by_name(name):
    with pytest.raises(ValueError, match=f"attention backend {name} is not supported"):
        check_backend(name)
    with pytest.raises(ValueError, match=name):
        KVLayout(name)


@pytest.mark.parametrize("name", ["FLASH_ATTN", "FLASHINFER", "TRITON_ATTN"])
def test_known_gpu_backends(name):
    check_backend(name)
    assert KVLayout(name).backend == name


@pytest.mark.parametrize("dtype", ["auto", "bfloat16", "float16", "float32", "fp8", "fp8_e4m3", "fp8_e5m2"])
def test_readable_cache_dtypes(dtype):
    assert kv_cache_dtype_problem(dtype) is None


@pytest.mark.parametrize(
    "dtype", ["fp8_per_token_head", "int8_per_token_head", "int4_per_token_head", "nvfp4", "turboquant_k8v4", "fp8_inc"]
)
def test_quantized_caches_with_other_scales_are_refused(dtype):
    assert "per-tensor fp8" in kv_cache_dtype_problem(dtype)
    with pytest.raises(ValueError, match=f"--kv-cache-dtype {dtype}"):
        KVLayout("FLASH_ATTN", dtype)


@pytest.mark.parametrize("isa", ["neon", "rvv", None])
def test_cpu_isas_with_unverified_pages_are_refused(isa):
    with pytest.raises(ValueError, match="CPU_ATTN with ISA"):
        KVLayout("CPU_ATTN", cpu_isa=isa)


def test_a_layer_reports_its_layout():
    backend = SimpleNamespace(get_name=lambda: "CPU_ATTN")
    layer = SimpleNamespace(attn_backend=backend, kv_cache_dtype="fp8", isa="vec")
    assert layer_layout(layer) == KVLayout("CPU_ATTN", "fp8", "vec")


def test_dense_tensors_are_one_of_k_or_v():
    keys = torch.zeros(3, 1, 2, 16)
    assert key_view(keys) is keys
    with pytest.raises(ValueError, match="DENSE"):
        kv_views(keys.view(3, 2, 1, 16), DENSE)
    with pytest.raises(ValueError, match="V tensor"):
        kv_pair(keys, None)
    with pytest.raises(ValueError, match="one tensor"):
        kv_pair(torch.zeros(3, 2, 16, 32), keys, KVLayout("FLASH_ATTN"))


def test_fp8_bytes_are_viewed_as_the_type_the_backend_writes():
    cache = torch.zeros(2, 1, 16, 32, dtype=torch.uint8)
    assert key_view(cache, KVLayout("FLASHINFER", "fp8_e5m2")).dtype == torch.float8_e5m2
    assert key_view(cache, KVLayout("FLASH_ATTN", "fp8")).dtype == torch.float8_e4m3fn
    assert key_view(cache, KVLayout("TRITON_ATTN", "fp8_e5m2")).dtype == torch.float8_e4m3fn
    assert key_view(cache, KVLayout("CPU_ATTN", "fp8_e5m2", "vec")).dtype == torch.float8_e5m2
    amx_cache = torch.zeros(2, 1, 32, 64, dtype=torch.uint8)
    assert key_view(amx_cache, KVLayout("CPU_ATTN", "fp8_e5m2", "amx")).dtype == torch.float8_e5m2


@pytest.mark.parametrize(("block_size", "head_size"), [(16, 64), (32, 48)])
def test_amx_pages_need_whole_tiles(block_size, head_size):
    with pytest.raises(ValueError, match="amx pages need block and head sizes multiple of 32"):
        kv_views(torch.zeros(2, 1, block_size, 2 * head_size), KVLayout("CPU_ATTN", cpu_isa="amx"))


def test_tiled_pages_index_like_a_view_of_their_tiles():
    """Tiles [B, N/t, t, G, d/p, p] read and write as [B, N, G, d]: token n = (n // t, n % t), dim = (i // p, i % p)."""
    dense = torch.arange(2 * 8 * 3 * 6, dtype=torch.float32).view(2, 8, 3, 6)
    tiles = dense.view(2, 2, 4, 3, 3, 2).clone()
    pages = TiledPages(tiles)
    assert pages.shape == dense.shape and pages.element_size() == 4
    blocks, offsets = torch.tensor([1, 0, 1]), torch.tensor([7, 2, 4])
    assert torch.equal(pages[blocks, offsets], dense[blocks, offsets])
    assert torch.equal(pages[blocks], dense[blocks])
    heads = torch.tensor([[2], [0]])
    per_head = dense[blocks, offsets][:, [2, 0]].transpose(0, 1)
    assert torch.equal(pages[blocks.view(1, -1), offsets.view(1, -1), heads], per_head)
    pages[blocks, offsets] = -dense[blocks, offsets]
    expected = dense.clone()
    expected[blocks, offsets] *= -1
    assert torch.equal(tiles.view(2, 8, 3, 6), expected)
    assert pages.view(torch.int32).dtype == torch.int32
