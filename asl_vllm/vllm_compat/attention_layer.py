"""What the plugin reads from a vLLM attention layer, and how it writes the layer's KV cache.

vLLM 0.32, `Attention` (vllm/model_executor/layers/attention/attention.py)
keeps, from its `__init__`: `layer_name` (its key in the forward context and
the KV cache config), `num_heads`, `num_kv_heads` and `head_size` (this
rank's), `kv_cache_dtype`, `attn_backend` (the backend class, whose
`get_name()` says which cache layout the layer has) and `impl` (the backend's
`AttentionImpl`: its `scale` is the softmax scale; its `do_kv_cache_update(layer,
key, value, kv_cache, slot_mapping)` writes K and V in the backend's own cache
layout; FLASH_ATTN, TRITON_ATTN, FLASHINFER and CPU_ATTN in
vllm/v1/attention/backends/). `kv_cache` is the layer's cache tensor, bound by
the model runner's `initialize_kv_cache`. The CPU backend's builder also sets
each layer's `isa` (`cpu_attention_isa`). `_k_scale_float` is the per-tensor
scale its backends dequantize an fp8 K cache with (1.0 for an unquantized
cache), set with the layer's quantization scales (`set_default_quant_scales`).
None of these is an interface for plugins.
"""

from __future__ import annotations

from typing import Any

import torch


def layer_name(layer: Any) -> str:
    """The layer's name: its key in the forward context's per-layer dicts and in the KV cache config."""
    return layer.layer_name


def head_shape(layer: Any) -> tuple[int, int, int]:
    """(query heads, KV heads, head size) of this rank's share of the layer."""
    return layer.num_heads, layer.num_kv_heads, layer.head_size


def softmax_scale(layer: Any) -> float:
    """The scale the layer's attention multiplies q·k by (its backend implementation's `scale`)."""
    return float(layer.impl.scale)


def layer_cache(layer: Any) -> torch.Tensor:
    """The layer's KV cache tensor, as the engine bound it (`[num_blocks, ...]`, the backend's layout)."""
    return layer.kv_cache


def write_kv(layer: Any, keys: torch.Tensor, values: torch.Tensor, slots: torch.Tensor) -> None:
    """Write keys/values[K, G, d] into the layer's cache at slots[K], through the backend's own cache update."""
    layer.impl.do_kv_cache_update(layer, keys, values, layer.kv_cache, slots)


def backend_name(layer: Any) -> str:
    """The name of the layer's attention backend (`FLASH_ATTN`, `CPU_ATTN`, ...), which fixes its cache layout."""
    return layer.attn_backend.get_name()


def cache_dtype(layer: Any) -> str:
    """The layer's `--kv-cache-dtype` (`auto`, `fp8`, ...)."""
    return layer.kv_cache_dtype


def cpu_isa(layer: Any) -> str | None:
    """The ISA vLLM's CPU attention runs for the layer (`vec`, `vec16`, ...); None on other backends."""
    return getattr(layer, "isa", None)


def key_scale(layer: Any) -> float:
    """The scale the layer's cached keys are stored with (the scoring operation multiplies them back)."""
    return float(layer._k_scale_float)
