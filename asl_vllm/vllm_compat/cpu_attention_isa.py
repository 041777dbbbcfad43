"""CPU attention's ISA in a pruning engine: one whose paged K/V layout `kv_layout` reads.

vLLM 0.32, vllm/v1/attention/backends/cpu_attn.py:
- `_get_attn_isa(dtype, block_size, head_size, kv_cache_dtype)` picks `vec16` for head
  sizes a multiple of 16 but not 32; else `amx` for bfloat16 on x86 hosts with AMX tiles
  when `block_size % 32 == 0`, `neon` on every ARM host, `rvv` / `vxe` / `vsx` on RISC-V,
  s390x and POWER, and `vec` otherwise. `CPUAttentionBackend.get_supported_kernel_block_sizes`
  is `[MultipleOf(32)]`, so no block size avoids `amx`: only a dtype other than bfloat16 does.
- `CPUAttentionMetadataBuilder.__init__` keeps the pick as `self.isa` (its `build` passes it
  to the scheduler metadata) and `_set_isa_to_layers` copies it to each layer's `isa`, which
  `do_kv_cache_update` and `forward` pass to `cpu_attn_reshape_and_cache` and
  `cpu_attention_with_kv_cache`.
`amx` packs K into AMX tiles that no strided view describes (tests/kernels pin this against the
op). `vec` is the kernel vLLM itself runs on every x86 host for other dtypes or without AMX, in the
same wheel, and its layout is the one `kv_layout` reads: so a pruning engine's builders take `vec`
where vLLM picked `amx` (the same attention, without AMX tiles; engines without a pruner keep
`amx`). The other packed ISAs have no such fallback established from vLLM's source and no
setting avoids them (`neon` is picked on ARM whatever the dtype and block size):
`unreadable_isa_problem` refuses them when the engine is configured.
"""

from __future__ import annotations

import functools
from typing import Any

from asl_vllm.config import from_vllm_config
from asl_vllm.log import logger
from asl_vllm.scoring.kv_layout import CPU_ISAS
from asl_vllm.vllm_compat.patching import is_patched, marked

# vLLM picks `amx` and the pruning engine runs `vec` instead (same wheel, same x86 host).
REPLACED_ISAS = {"amx": "vec"}
# `CpuPlatform.check_and_update_config` (vllm/platforms/cpu.py): the block size when none is given.
CPU_DEFAULT_BLOCK_SIZE = 128


def pruning_isa(isa: str) -> str | None:
    """The ISA a pruning engine runs where vLLM picks `isa`: one `kv_layout` reads, or None if there is none."""
    isa = REPLACED_ISAS.get(isa, isa)
    return isa if isa in CPU_ISAS else None


def unreadable_isa_problem(model_config: Any, block_size: int | None, kv_cache_dtype: str) -> str | None:
    """Why this host's CPU attention cannot be pruned for this model (vLLM's own ISA choice), or None."""
    from vllm.v1.attention.backends.cpu_attn import _get_attn_isa

    isa = _get_attn_isa(
        model_config.dtype, block_size or CPU_DEFAULT_BLOCK_SIZE, model_config.get_head_size(), kv_cache_dtype
    )
    return None if pruning_isa(isa) is not None else _unreadable(isa)


def _unreadable(isa: str) -> str:
    return (
        f"vLLM's CPU attention runs its {isa!r} kernels on this host, whose packed KV cache layout the scoring "
        f"kernels cannot read (they read {', '.join(CPU_ISAS)}, and amx is run as vec): KV pruning on CPU needs "
        "an x86 host"
    )


def use_readable_isa() -> None:
    """Pruning engines' CPU attention builders run an ISA `kv_layout` reads (idempotent, per process)."""
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionMetadataBuilder

    original = CPUAttentionMetadataBuilder.__init__
    if is_patched(original):
        return

    @marked
    @functools.wraps(original)
    def __init__(self: Any, kv_cache_spec: Any, layer_names: list[str], vllm_config: Any, device: Any) -> None:
        original(self, kv_cache_spec, layer_names, vllm_config, device)
        if not from_vllm_config(vllm_config).enabled:
            return
        isa = pruning_isa(self.isa)
        if isa is None:
            raise RuntimeError(_unreadable(self.isa))
        if isa != self.isa:
            logger.info(
                "asl-vllm: CPU attention runs its %r kernels instead of %r, whose packed KV cache the pruning "
                "kernels cannot read",
                isa,
                self.isa,
            )
            self.isa = isa
            self._set_isa_to_layers(layer_names)

    CPUAttentionMetadataBuilder.__init__ = __init__
