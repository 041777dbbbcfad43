"""The kernels and the torch references on vLLM 0.32's real cache layouts, per backend, layout and dtype.

Caches come from vLLM's own allocator and are written by each backend's own
`do_kv_cache_update` (`backend_caches`). Three things are checked per case:
1. `kv_views` reads back exactly what the backend wrote (so the views are
   that backend's split, not merely self-consistent);
2. the window-histogram kernel and its torch reference, both reading the
   cache, equal the dense reference on the original (dequantized) keys;
3. the compaction kernel leaves the whole buffer bit-identical to the torch
   reference's, and the tail slots then hold each head's kept tokens.
CPU_ATTN's `amx` pages are read by the torch references only (a CPU engine
never runs Triton): there the compacted buffer is checked bit for bit against
the same tokens written to the tail slots by the backend's own op.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from vllm.v1.attention.backends import flash_attn
from vllm.v1.kv_cache_layout import KVCacheLayout

from asl_vllm.kernels import compaction, window_scores
from asl_vllm.scoring import paged
from asl_vllm.scoring import reference as ref
from asl_vllm.scoring.kv_layout import KVLayout, kv_views

from .backend_caches import FP8, BackendWriter, allocate, bits, buffer_bytes

GARBAGE = 100.0  # every slot no request owns, in both layers: reading one shows in the result
WINDOW = 8
LENGTHS = [37, 5, 70]  # a request shorter than the window, none a multiple of the block size


@dataclass(frozen=True)
class Case:
    backend: str
    layout: KVCacheLayout = KVCacheLayout.LBNHC
    kv_cache_dtype: str = "auto"
    model_dtype: torch.dtype = torch.bfloat16
    block_size: int = 16
    head_size: int = 64
    cpu_isa: str | None = None
    kernel_block_size: int | None = None

    @property
    def triton_reads(self) -> bool:
        """Whether the Triton kernels read this layout (not `amx` tiles, which only CPU engines write)."""
        return self.cpu_isa != "amx"

    def __str__(self) -> str:
        extra = f"-isa={self.cpu_isa}" if self.cpu_isa else ""
        extra += f"-kernel_block={self.kernel_block_size}" if self.kernel_block_size else ""
        dtype = str(self.model_dtype).removeprefix("torch.")
        shape = f"N{self.block_size}-d{self.head_size}"
        return f"{self.backend}-{self.layout.name}-{self.kv_cache_dtype}-{dtype}-{shape}{extra}"


CASES = [
    *(Case("FLASH_ATTN", layout) for layout in KVCacheLayout),
    Case("FLASH_ATTN", KVCacheLayout.LBNHC, block_size=32, kernel_block_size=16),
    Case("FLASH_ATTN", KVCacheLayout.LBHNC, block_size=32, kernel_block_size=16),
    Case("FLASHINFER", KVCacheLayout.LBNHC, model_dtype=torch.float16),
    Case("FLASHINFER", KVCacheLayout.LBHNC),
    Case("FLASHINFER", KVCacheLayout.BLHNC),
    Case("TRITON_ATTN", KVCacheLayout.LBNHC, head_size=80),
    Case("TRITON_ATTN", KVCacheLayout.LBHNC, model_dtype=torch.float32),
    Case("CPU_ATTN", KVCacheLayout.LBHNC, block_size=32, cpu_isa="vec"),
    Case("CPU_ATTN", KVCacheLayout.LBHNC, model_dtype=torch.float32, cpu_isa="vec16"),
    Case("CPU_ATTN", KVCacheLayout.LBHNC, block_size=32, head_size=80, cpu_isa="vec16"),
    Case("CPU_ATTN", KVCacheLayout.LBHNC, block_size=32, cpu_isa="amx"),
    Case("CPU_ATTN", KVCacheLayout.LBHNC, block_size=128, cpu_isa="amx"),
    Case("CPU_ATTN", KVCacheLayout.LBHNC, block_size=64, head_size=128, cpu_isa="amx"),
]
FP8_CASES = [
    Case("FLASH_ATTN", kv_cache_dtype="fp8"),
    Case("FLASH_ATTN", KVCacheLayout.LBHNC, kv_cache_dtype="fp8_e4m3"),
    Case("FLASHINFER", kv_cache_dtype="fp8_e5m2"),
    Case("FLASHINFER", KVCacheLayout.LBHNC, kv_cache_dtype="fp8", model_dtype=torch.float16),
    Case("TRITON_ATTN", kv_cache_dtype="fp8"),
    Case("TRITON_ATTN", KVCacheLayout.LBHNC, kv_cache_dtype="fp8_e5m2"),
    Case("CPU_ATTN", KVCacheLayout.LBHNC, kv_cache_dtype="fp8", block_size=32, cpu_isa="vec"),
    Case("CPU_ATTN", KVCacheLayout.LBHNC, kv_cache_dtype="fp8_e5m2", block_size=32, cpu_isa="vec"),
    Case("CPU_ATTN", KVCacheLayout.LBHNC, kv_cache_dtype="fp8", block_size=32, cpu_isa="amx"),
    Case("CPU_ATTN", KVCacheLayout.LBHNC, kv_cache_dtype="fp8_e5m2", block_size=64, cpu_isa="amx"),
]
K_SCALE, V_SCALE = 0.5, 0.25


def _tokens(case: Case, count: int, scale: float, generator: torch.Generator) -> torch.Tensor:
    """Random K or V tokens [count, G, d] in the model dtype.

    For fp8: scale times multiples of 1/4 up to 2, exact in e4m3 and e5m2
    alike, so storing them loses nothing whichever fp8 type a backend writes.
    """
    if case.kv_cache_dtype in FP8:
        quarters = torch.randint(-8, 9, (count, 2, case.head_size), generator=generator)
        return (quarters * (scale / 4)).to(case.model_dtype)
    return torch.randn(count, 2, case.head_size, generator=generator).to(case.model_dtype)


def _filled(case: Case, monkeypatch, seed: int):
    """(caches, writer, block table, keys per request, values per request) after a prefill of LENGTHS."""
    generator = torch.Generator().manual_seed(seed)
    num_blocks = len(LENGTHS) * (-(-max(LENGTHS) // case.block_size) + 1) + 2
    caches = allocate(
        case.layout, num_blocks, case.block_size, 2, case.head_size, case.model_dtype, case.kv_cache_dtype,
        case.kernel_block_size,
    )  # fmt: skip
    writer = BackendWriter(case.backend, case.kv_cache_dtype, case.head_size, monkeypatch, case.cpu_isa)
    view_blocks, view_block_size = caches[0].shape[0], caches[0].shape[2]
    every_slot = torch.arange(view_blocks * view_block_size)
    garbage = torch.full((every_slot.numel(), 2, case.head_size), GARBAGE, dtype=case.model_dtype)
    for cache in caches:
        writer.write(cache, garbage, garbage, every_slot, K_SCALE, V_SCALE)
    per_req = -(-max(LENGTHS) // view_block_size) + 1
    table = torch.randperm(view_blocks, generator=generator)[: len(LENGTHS) * per_req].view(len(LENGTHS), per_req)
    keys, values = [], []
    for r, n in enumerate(LENGTHS):
        keys.append(_tokens(case, n, K_SCALE, generator))
        values.append(_tokens(case, n, V_SCALE, generator))
        positions = torch.arange(n)
        slots = _slots(table[r], positions, view_block_size)
        writer.write(caches[1], keys[r], values[r], slots, K_SCALE, V_SCALE)
    return caches, table.int(), keys, values


def _slots(block_row: torch.Tensor, positions: torch.Tensor, block_size: int) -> torch.Tensor:
    """The slots of a request's positions, given its row of the block table."""
    return block_row[positions // block_size].long() * block_size + positions % block_size


def _layout(case: Case) -> KVLayout:
    return KVLayout(case.backend, case.kv_cache_dtype, case.cpu_isa)


def _stored(case: Case, tokens: torch.Tensor, scale: float) -> torch.Tensor:
    """What the cache holds for `tokens`, in the dtype `kv_views` presents."""
    if case.kv_cache_dtype in FP8:
        stored = torch.float8_e4m3fn if case.backend == "TRITON_ATTN" else FP8[case.kv_cache_dtype]
        return (tokens.float() / scale).to(stored)
    return tokens


@functools.cache
def _amx_store_problem() -> str | None:
    """Why this vLLM build cannot run the AMX store, or None (the store is plain stores: any x86 runs it)."""
    from vllm import _custom_ops as ops

    cache = torch.zeros(1, 1, 32, 128)
    key_cache, value_cache = cache.view(1, 1, 64, 64).chunk(2, dim=2)
    tokens = torch.zeros(1, 1, 64)
    try:
        ops.cpu_attn_reshape_and_cache(tokens, tokens, key_cache, value_cache, torch.zeros(1).long(), "amx")
    except RuntimeError as error:
        return f"this vLLM build has no AMX store: {error}"
    return None


def _check(case: Case, monkeypatch) -> None:
    if not case.triton_reads and _amx_store_problem():
        pytest.skip(_amx_store_problem())
    caches, table, keys, values = _filled(case, monkeypatch, seed=len(str(case)))
    layout = _layout(case)
    k_view, v_view = kv_views(caches[1], layout)
    block_size = k_view.shape[1]
    for r, n in enumerate(LENGTHS):
        blocks, offsets = paged.slot_index(k_view, table[r], torch.arange(n))
        assert torch.equal(bits(k_view[blocks, offsets]), bits(_stored(case, keys[r], K_SCALE)))
        assert torch.equal(bits(v_view[blocks, offsets]), bits(_stored(case, values[r], V_SCALE)))

    generator = torch.Generator().manual_seed(1)
    q_win = torch.randn(len(LENGTHS), WINDOW, 4, case.head_size, generator=generator).to(case.model_dtype)
    seq_lens = torch.tensor(LENGTHS, dtype=torch.int32)
    k_scale = K_SCALE if case.kv_cache_dtype in FP8 else 1.0
    scale = case.head_size**-0.5
    expected = paged.paged_window_histogram(q_win, caches[1], table, seq_lens, scale, layout, k_scale)
    if case.triton_reads:
        got = window_scores.paged_window_histogram(q_win, caches[1], table, seq_lens, scale, layout, k_scale)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    for r, n in enumerate(LENGTHS):
        w = min(WINDOW, n)
        dense = ref.window_histogram(q_win[r, :w], keys[r].float(), scale)
        torch.testing.assert_close(expected[r, :, : n - w], dense, atol=1e-5, rtol=1e-5)

    n = LENGTHS[2]
    kept = torch.stack([torch.arange(n - 33, n - 1), torch.sort(torch.randperm(n, generator=generator)[:32]).values])
    twin, twin_table, _, _ = _filled(case, monkeypatch, seed=len(str(case)))
    assert torch.equal(twin_table, table)
    paged.compact_tail(twin[1], None, table[2], kept, n, layout)
    if case.triton_reads:
        compaction.compact_tail(caches[1], None, table[2], kept, n, layout)
    else:
        _write_kept_tail(case, caches[1], table[2], kept, keys[2], values[2], n, monkeypatch)
    assert torch.equal(buffer_bytes(caches[1]), buffer_bytes(twin[1]))
    k_view, v_view = kv_views(caches[1], layout)
    tail = paged.slot_index(k_view, table[2], torch.arange(n - 32, n))
    assert block_size == k_view.shape[1]
    for g in range(2):
        assert torch.equal(bits(k_view[tail[0], tail[1], g]), bits(_stored(case, keys[2][kept[g], g], K_SCALE)))
        assert torch.equal(bits(v_view[tail[0], tail[1], g]), bits(_stored(case, values[2][kept[g], g], V_SCALE)))


def _write_kept_tail(case, cache, block_row, kept, keys, values, end_slot, monkeypatch) -> None:
    """What compaction must leave: each head's kept tokens written to the tail slots by the backend's own op."""
    heads = torch.arange(kept.shape[0]).view(-1, 1)
    positions = torch.arange(end_slot - kept.shape[1], end_slot)
    slots = _slots(block_row, positions, cache.shape[2])
    writer = BackendWriter(case.backend, case.kv_cache_dtype, case.head_size, monkeypatch, case.cpu_isa)
    tail_keys, tail_values = (tokens[kept, heads].transpose(0, 1).contiguous() for tokens in (keys, values))
    writer.write(cache, tail_keys, tail_values, slots, K_SCALE, V_SCALE)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_kernels_and_references_on_backend_caches(case, monkeypatch):
    _check(case, monkeypatch)


@pytest.mark.parametrize("case", FP8_CASES, ids=str)
def test_fp8_caches_are_dequantized_with_k_scale(case, monkeypatch):
    _check(case, monkeypatch)


def test_flashinfer_writes_its_cache_as_flash_attention_does():
    """FLASHINFER's caches are written here by FLASH_ATTN's method: pin that its own method splits alike."""
    source = Path(flash_attn.__file__).with_name("flashinfer.py").read_text()
    tree = ast.parse(source)
    impl = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "FlashInferImpl")
    method = next(node for node in impl.body if isinstance(node, ast.FunctionDef) and node.name == "do_kv_cache_update")
    code = "".join(ast.get_source_segment(source, method).split())
    assert "kv_cache.transpose(1,2).split(self.head_size,dim=-1)" in code
    store = "torch.ops._C_cache_ops.reshape_and_cache_flash(key,value,k_cache,v_cache,slot_mapping,self.cache_dtype,"
    assert store in code


def test_cpu_amx_pages_are_tiled_not_a_page_per_head():
    """The AMX store (plain stores, so it runs on any x86) puts K where neither a [N, d] nor a [d, N] page would:
    why `amx` needs `TiledPages` (the cases above check where it does put them)."""
    from vllm import _custom_ops as ops

    if _amx_store_problem():
        pytest.skip(_amx_store_problem())
    block_size, head_size = 32, 64
    cache = torch.zeros(1, 1, block_size, 2 * head_size)
    key_cache, value_cache = cache.view(1, 1, 2 * block_size, head_size).chunk(2, dim=2)
    keys = torch.arange(block_size * head_size, dtype=torch.float32).view(block_size, 1, head_size)
    ops.cpu_attn_reshape_and_cache(
        keys, keys, key_cache, value_cache, torch.arange(block_size), "amx", k_scale=1.0, v_scale=1.0,
        kv_cache_dtype="auto",
    )  # fmt: skip
    for page in (key_cache[0, 0].reshape(-1), value_cache[0, 0].reshape(-1)):
        assert not torch.equal(page, keys.flatten())
        assert not torch.equal(page, keys[:, 0].t().flatten())
