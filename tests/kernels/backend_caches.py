"""Layer caches allocated by vLLM 0.32's own allocator and written by each backend's own `do_kv_cache_update`.

The shapes and strides are vLLM's pure functions (`compute_layout_strides`,
`allocate_kv_cache`), so every `KVCacheLayout` is built on the CPU exactly as
the engine builds it. Writes go through the backend's `do_kv_cache_update`,
whose split of the cache into K and V is what the readers must agree with:
- CPU_ATTN runs its real op, `cpu_attn_reshape_and_cache`;
- FLASH_ATTN and TRITON_ATTN run their own method, with the CUDA-only store
  op it calls replaced by `emulated_reshape_and_cache_flash` (the op's
  contract: token i goes to `cache[slot // N, slot % N]`, fp8 stores
  value / scale);
- FLASHINFER's module needs the `flashinfer` package, absent here; its
  method splits and stores exactly as FLASH_ATTN's (a test pins the source
  text), so its caches are written by FLASH_ATTN's method.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from vllm.v1.attention.backend import AttentionType
from vllm.v1.attention.backends import cpu_attn, flash_attn, triton_attn
from vllm.v1.kv_cache_interface import (
    FullAttentionSpec,
    KVCacheConfig,
    KVCacheGroupSpec,
    KVCacheTensor,
    compute_layout_strides,
    get_kv_quant_mode,
)
from vllm.v1.kv_cache_layout import KVCacheLayout
from vllm.v1.worker.utils import allocate_kv_cache

LAYER_NAMES = ["model.layers.0.self_attn.attn", "model.layers.1.self_attn.attn"]
FP8 = {"fp8": torch.float8_e4m3fn, "fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32}


def bits(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.view(BITS[tensor.element_size()])


def buffer_bytes(cache: torch.Tensor) -> torch.Tensor:
    """The whole backing buffer a layer cache views, as bytes (both layers, every block)."""
    return torch.empty(0, dtype=torch.uint8).set_(cache.untyped_storage())


def allocate(
    layout: KVCacheLayout,
    num_blocks: int,
    block_size: int,
    num_kv_heads: int,
    head_size: int,
    model_dtype: torch.dtype,
    kv_cache_dtype: str = "auto",
    kernel_block_size: int | None = None,
) -> list[torch.Tensor]:
    """Two layers' caches in one buffer, as the engine allocates them: [num_blocks, G, block_size, 2d] views."""
    storage_dtype = torch.uint8 if kv_cache_dtype in FP8 else model_dtype
    spec = FullAttentionSpec(
        block_size=block_size,
        num_kv_heads=num_kv_heads,
        head_size=head_size,
        dtype=storage_dtype,
        kv_quant_mode=get_kv_quant_mode(kv_cache_dtype),
    )
    layer_stride, block_stride, *_ = compute_layout_strides(spec, num_blocks, len(LAYER_NAMES), layout)
    tensor = KVCacheTensor(
        size=len(LAYER_NAMES) * num_blocks * spec.page_size_bytes,
        layers=LAYER_NAMES,
        layer_stride=layer_stride,
        block_stride=block_stride,
    )
    config = KVCacheConfig(
        num_blocks=num_blocks, kv_cache_tensors=[tensor], kv_cache_groups=[KVCacheGroupSpec(LAYER_NAMES, spec)]
    )
    kernel_sizes = None if kernel_block_size is None else [kernel_block_size]
    caches = allocate_kv_cache(config, torch.device("cpu"), layout, kernel_sizes)
    return [caches[name] for name in LAYER_NAMES]


def emulated_reshape_and_cache_flash(
    key: torch.Tensor,
    value: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
    kv_cache_dtype: str,
    k_scale: torch.Tensor,
    v_scale: torch.Tensor,
) -> None:
    """vLLM's CUDA `reshape_and_cache_flash` in torch, on the [num_blocks, N, G, d] views it is handed.

    A uint8 cache holds the fp8 type the string names (the C++ op's
    dispatch); an fp8-typed view (TRITON_ATTN's) holds its own type.
    """
    block_size = key_cache.shape[1]
    blocks, offsets = slot_mapping // block_size, slot_mapping % block_size
    for tokens, cache, scale in ((key, key_cache, k_scale), (value, value_cache, v_scale)):
        if kv_cache_dtype in FP8:
            stored_dtype = FP8[kv_cache_dtype] if cache.dtype == torch.uint8 else cache.dtype
            stored = (tokens.float() / float(scale)).to(stored_dtype)
        else:
            stored = tokens.to(cache.dtype)
        bits(cache)[blocks, offsets] = bits(stored)


class BackendWriter:
    """Writes K and V tokens into a layer cache through `backend`'s own `do_kv_cache_update`."""

    def __init__(self, backend: str, kv_cache_dtype: str, head_size: int, monkeypatch, cpu_isa: str | None = None):
        self.backend = backend
        self.kv_cache_dtype = kv_cache_dtype
        self.head_size = head_size
        self.cpu_isa = cpu_isa
        monkeypatch.setattr(flash_attn, "reshape_and_cache_flash", emulated_reshape_and_cache_flash, raising=False)
        monkeypatch.setattr(triton_attn, "triton_reshape_and_cache_flash", emulated_reshape_and_cache_flash)

    def write(
        self,
        cache: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        slots: torch.Tensor,
        k_scale: float = 1.0,
        v_scale: float = 1.0,
    ) -> None:
        layer = SimpleNamespace(
            _k_scale=torch.tensor(k_scale),
            _v_scale=torch.tensor(v_scale),
            _k_scale_float=k_scale,
            _v_scale_float=v_scale,
            isa=self.cpu_isa,
        )
        impl = SimpleNamespace(
            attn_type=AttentionType.DECODER,
            head_size=self.head_size,
            kv_cache_dtype=self.kv_cache_dtype,
            _is_per_token_head_quant=False,
            fp8_dtype=torch.float8_e4m3fn,  # `current_platform.fp8_dtype()` on CUDA
        )
        update = {
            "FLASH_ATTN": flash_attn.FlashAttentionImpl.do_kv_cache_update,
            "FLASHINFER": flash_attn.FlashAttentionImpl.do_kv_cache_update,
            "TRITON_ATTN": triton_attn.TritonAttentionImpl.do_kv_cache_update,
            "CPU_ATTN": cpu_attn.CPUAttentionBackendImpl.do_kv_cache_update,
        }[self.backend]
        update(impl, layer, keys, values, cache, slots.long())
