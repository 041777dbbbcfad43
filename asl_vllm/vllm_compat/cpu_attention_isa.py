"""CPU attention's ISA on this host, refused at configuration when `kv_layout` does not read its pages.

vLLM 0.32, vllm/v1/attention/backends/cpu_attn.py: `_get_attn_isa(dtype, block_size,
head_size, kv_cache_dtype)` picks `vec16` for head sizes a multiple of 16 but not 32; else
`amx` for bfloat16 on x86 hosts with AMX tiles when `block_size % 32 == 0`, `neon` on every
ARM host, `rvv` / `vxe` / `vsx` on RISC-V, s390x and POWER, and `vec` otherwise. The pruning
engine runs whatever vLLM picks: `vec`, `vec16` and `amx` pages are read by `kv_layout` (each
pinned against `cpu_attn_reshape_and_cache` by tests). The others are unverified and no setting
avoids them (`neon` is picked on ARM whatever the dtype and block size), so
`unreadable_isa_problem` refuses them before any cache is written.
"""

from __future__ import annotations

from typing import Any

from asl_vllm.scoring.kv_layout import CPU_ISAS

# `CpuPlatform.check_and_update_config` (vllm/platforms/cpu.py): the block size when none is given.
CPU_DEFAULT_BLOCK_SIZE = 128


def unreadable_isa_problem(model_config: Any, block_size: int | None, kv_cache_dtype: str) -> str | None:
    """Why this host's CPU attention cannot be pruned for this model (vLLM's own ISA choice), or None."""
    from vllm.v1.attention.backends.cpu_attn import _get_attn_isa

    isa = _get_attn_isa(
        model_config.dtype, block_size or CPU_DEFAULT_BLOCK_SIZE, model_config.get_head_size(), kv_cache_dtype
    )
    if isa in CPU_ISAS:
        return None
    return (
        f"vLLM's CPU attention runs its {isa!r} kernels on this host, whose KV cache layout the scoring "
        f"kernels do not read (they read {', '.join(CPU_ISAS)}): KV pruning on CPU needs an x86 host"
    )
