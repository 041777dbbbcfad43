"""Which bytes of a layer's KV cache tensor are K and which are V, per vLLM 0.32 attention backend.

vLLM 0.32 binds each attention layer one tensor, the logical view
`[num_blocks, G, block_size, C]` of the engine's byte buffer. Its physical
order is the engine's `KVCacheLayout` (NHD = LBNHC, HND = LBHNC, and the
block-outer ones): the view's strides carry it, so nothing here branches on
it. The backends split C in two ways, each in its own `do_kv_cache_update`:
- FLASH_ATTN, FLASHINFER, TRITON_ATTN: C = 2d, K = `[..., :d]`, V = `[..., d:]`
  (`kv_cache.transpose(1, 2).split(head_size, dim=-1)`);
- CPU_ATTN: a block's `[G, N, 2d]` page is read as `[G, 2N, d]`, K its first N
  rows and V the last N (`kv_cache.view(B, G, 2N, d).chunk(2, dim=2)`); within
  them `cpu_attn_reshape_and_cache` orders elements by ISA (tests pin each
  against the op): `vec` and `vec16` store each head's K transposed, `[d, N]`,
  and V as written; `amx` stores AMX tiles, K as `[N/16, d/2, 16, 2]` (16
  tokens per tile, head dims in pairs) and V as `[d/16, N/2, 16, 2]` (16 head
  dims per tile, tokens in pairs). No single stride per token and head dim
  describes those: `TiledPages` indexes them like the other views. `neon`,
  `rvv`, `vxe`, `vsx` are unverified and refused (the engine's configuration
  refuses hosts where vLLM would pick them).
Every reader (the Triton kernels and the torch references) takes its
`[num_blocks, block_size, G, d]` views from `key_view`/`kv_views`, so these
functions alone decide which bytes are K. Only the torch references (all a
CPU engine runs) read `TiledPages`. `DENSE` is a plain K (or V) tensor in
that shape, e.g. a step's dense keys `[T, G, d]` seen as `[T, 1, G, d]`.

fp8 caches are stored as uint8 and viewed as the fp8 type the backend's write
produces (see `_fp8_dtype`); readers dequantize with the layer's per-tensor
`k_scale`, as vLLM's own attention does.

Imports torch, and `vllm_compat.attention_layer` (which imports no vLLM), only:
`benchmarks.kernels.timing` runs where vLLM is not installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from asl_vllm.vllm_compat.attention_layer import backend_name, cache_dtype, cpu_isa

DENSE_BACKEND = "DENSE"
GPU_BACKENDS = ("FLASH_ATTN", "FLASHINFER", "TRITON_ATTN")
CPU_BACKEND = "CPU_ATTN"
SUPPORTED_BACKENDS = (*GPU_BACKENDS, CPU_BACKEND)
# CPU_ATTN ISAs whose pages are read here (each checked against `cpu_attn_reshape_and_cache`).
CPU_ISAS = ("vec", "vec16", "amx")
# `amx` tiles: K holds 16 tokens per tile with head dims in pairs, V 16 head dims per tile with tokens in pairs;
# its store and attention take block sizes and head sizes that are multiples of 32 (`_get_attn_isa`, the op's check).
AMX_TILE, AMX_PAIR, AMX_MULTIPLE = 16, 2, 32
UNQUANTIZED_DTYPES = ("auto", "float16", "bfloat16", "float32", "half", "float")
FP8_DTYPES = ("fp8", "fp8_e4m3", "fp8_e5m2")
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def check_backend(*names: str) -> None:
    """Refuse any attention backend whose cache layout the kernels do not know (the engine calls it at start-up)."""
    for name in names:
        if name not in SUPPORTED_BACKENDS:
            raise ValueError(
                f"attention backend {name} is not supported by KV pruning: its KV cache layout is unknown to "
                f"the scoring kernels (supported: {', '.join(SUPPORTED_BACKENDS)})"
            )


def kv_cache_dtype_problem(kv_cache_dtype: str) -> str | None:
    """Why a `--kv-cache-dtype` cannot be pruned, or None.

    Unquantized caches and per-tensor fp8 are read (fp8 dequantized with the
    layer's k_scale); per-token-head scales and packed 4-bit formats keep
    their scales in other tensors, which the kernels do not read.
    """
    if kv_cache_dtype in UNQUANTIZED_DTYPES or kv_cache_dtype in FP8_DTYPES:
        return None
    readable = ", ".join((*UNQUANTIZED_DTYPES, *FP8_DTYPES))
    return f"the scoring kernels read only unquantized and per-tensor fp8 caches ({readable})"


@dataclass(frozen=True)
class KVLayout:
    """How one layer's cache tensor holds K and V: the backend, its `--kv-cache-dtype`, CPU_ATTN's ISA."""

    backend: str = DENSE_BACKEND
    kv_cache_dtype: str = "auto"
    cpu_isa: str | None = None

    def __post_init__(self) -> None:
        if self.backend != DENSE_BACKEND:
            check_backend(self.backend)
        problem = kv_cache_dtype_problem(self.kv_cache_dtype)
        if problem:
            raise ValueError(f"--kv-cache-dtype {self.kv_cache_dtype}: {problem}")
        if self.backend == CPU_BACKEND and self.cpu_isa not in CPU_ISAS:
            raise ValueError(
                f"CPU_ATTN with ISA {self.cpu_isa!r} stores K in a layout the scoring kernels "
                f"do not read (readable ISAs: {', '.join(CPU_ISAS)})"
            )

    @property
    def is_fp8(self) -> bool:
        return self.kv_cache_dtype in FP8_DTYPES


DENSE = KVLayout()


@dataclass(frozen=True)
class TiledPages:
    """K or V pages whose token and head axes each split in two: `tiles[num_blocks, N/t, t, G, d/p, p]`.

    Indexed like a `[num_blocks, N, G, d]` view with block ids (whole pages,
    read as `[k, N, G, d]`) or (blocks, offsets) or (blocks, offsets, heads)
    index tensors: reads return `[..., d]` copies, assignments take `[..., d]`.
    That is all the torch references do with a view, so they read and move AMX
    tiles without a layout branch of their own.
    """

    tiles: torch.Tensor

    @property
    def shape(self) -> torch.Size:
        num_blocks, token_tiles, tile, heads, dim_tiles, pair = self.tiles.shape
        return torch.Size((num_blocks, token_tiles * tile, heads, dim_tiles * pair))

    @property
    def dtype(self) -> torch.dtype:
        return self.tiles.dtype

    @property
    def device(self) -> torch.device:
        return self.tiles.device

    def element_size(self) -> int:
        return self.tiles.element_size()

    def view(self, dtype: torch.dtype) -> TiledPages:
        """The same bytes as another dtype of the same width (fp8 types, integers for exact copies)."""
        return TiledPages(self.tiles.view(dtype))

    def __getitem__(self, index: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
        if isinstance(index, torch.Tensor):
            return self.tiles[index].flatten(1, 2).flatten(-2)
        return self.tiles[self._tile_index(index)].flatten(-2)

    def __setitem__(self, index: tuple[torch.Tensor, ...], values: torch.Tensor) -> None:
        self.tiles[self._tile_index(index)] = values.unflatten(-1, self.tiles.shape[-2:])

    def _tile_index(self, index: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        blocks, offsets, *heads = index
        tile = self.tiles.shape[2]
        return (blocks, offsets // tile, offsets % tile, *heads)


Pages = torch.Tensor | TiledPages


def layer_layout(layer: Any) -> KVLayout:
    """The layout of a vLLM `Attention` layer's bound cache (after the KV cache is initialised)."""
    return KVLayout(backend_name(layer), cache_dtype(layer), cpu_isa(layer))


def key_view(cache: torch.Tensor, layout: KVLayout = DENSE) -> Pages:
    """The K view `[num_blocks, block_size, G, d]` of a layer's cache (DENSE: the tensor itself)."""
    if layout.backend == DENSE_BACKEND:
        return _as_stored(cache, layout)
    return kv_views(cache, layout)[0]


def kv_views(cache: torch.Tensor, layout: KVLayout) -> tuple[Pages, Pages]:
    """(K, V) views `[num_blocks, block_size, G, d]` of one layer's cache tensor `[num_blocks, G, N, C]`."""
    if cache.dim() != 4:
        raise ValueError(f"a layer's KV cache is [num_blocks, G, block_size, C], got {tuple(cache.shape)}")
    if layout.backend == CPU_BACKEND and layout.cpu_isa == "amx":
        keys, values = _amx_views(cache)
    elif layout.backend == CPU_BACKEND:
        keys, values = _cpu_views(cache)
    elif layout.backend in GPU_BACKENDS:
        keys, values = _gpu_views(cache)
    else:
        raise ValueError("a DENSE cache holds only K or only V: pass K and V separately")
    return _as_stored(keys, layout), _as_stored(values, layout)


def kv_pair(k_cache: torch.Tensor, v_cache: torch.Tensor | None, layout: KVLayout = DENSE) -> tuple[Pages, Pages]:
    """(K, V) views for an operation on both.

    DENSE takes the two tensors as given; a backend's layout splits `k_cache`,
    the layer's whole cache tensor (`v_cache` None).
    """
    if layout.backend == DENSE_BACKEND:
        if v_cache is None:
            raise ValueError("a DENSE layout needs the V tensor beside the K tensor")
        return _as_stored(k_cache, layout), _as_stored(v_cache, layout)
    if v_cache is not None:
        raise ValueError(f"a {layout.backend} cache holds K and V in one tensor: pass it alone (v_cache None)")
    return kv_views(k_cache, layout)


def as_bits(view: Pages) -> Pages:
    """The same elements as integers of their width: copies move bits exactly (fp8, NaN payloads)."""
    return view.view(_BITS[view.element_size()])


def _gpu_views(cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FLASH_ATTN / FLASHINFER / TRITON_ATTN: K and V side by side in the content axis."""
    head_size = cache.shape[-1] // 2
    keys, values = cache.transpose(1, 2).split(head_size, dim=-1)
    return keys, values


def _cpu_views(cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CPU_ATTN: K rows then V rows in each head's page; K stored transposed ([d, N]), V as written."""
    num_blocks, num_kv_heads, block_size, content = cache.shape
    head_size = content // 2
    keys, values = cache.view(num_blocks, num_kv_heads, 2 * block_size, head_size).chunk(2, dim=2)
    keys = keys.flatten(2).unflatten(2, (head_size, block_size)).permute(0, 3, 1, 2)
    return keys, values.transpose(1, 2)


def _amx_views(cache: torch.Tensor) -> tuple[TiledPages, TiledPages]:
    """CPU_ATTN `amx`: each head's K page `[N/16, d/2, 16, 2]`, its V page `[d/16, N/2, 16, 2]`."""
    num_blocks, num_kv_heads, block_size, content = cache.shape
    head_size = content // 2
    if block_size % AMX_MULTIPLE or head_size % AMX_MULTIPLE:
        raise ValueError(
            f"amx pages need block and head sizes multiple of {AMX_MULTIPLE}, got {block_size} and {head_size}"
        )
    keys, values = cache.view(num_blocks, num_kv_heads, 2, block_size * head_size).unbind(2)
    keys = keys.unflatten(2, (block_size // AMX_TILE, head_size // AMX_PAIR, AMX_TILE, AMX_PAIR))
    values = values.unflatten(2, (head_size // AMX_TILE, block_size // AMX_PAIR, AMX_TILE, AMX_PAIR))
    return TiledPages(keys.permute(0, 2, 4, 1, 3, 5)), TiledPages(values.permute(0, 3, 5, 1, 2, 4))


def _fp8_dtype(layout: KVLayout) -> torch.dtype:
    """The fp8 type the backend's cache write produces.

    TRITON_ATTN writes and reads every fp8 cache as the platform's e4m3 type
    (`triton_reshape_and_cache_flash` views the cache as
    `current_platform.fp8_dtype()` whatever the string says); the other
    backends' writes honour `fp8_e5m2`.
    """
    if layout.kv_cache_dtype == "fp8_e5m2" and layout.backend != "TRITON_ATTN":
        return torch.float8_e5m2
    return torch.float8_e4m3fn


def _as_stored(view: Pages, layout: KVLayout) -> Pages:
    """fp8 bytes (uint8 storage) as their fp8 type; other dtypes unchanged."""
    if layout.is_fp8 and view.dtype == torch.uint8:
        return view.view(_fp8_dtype(layout))
    return view
