"""A pruning engine's CPU attention runs vLLM's own ISA, whose KV layout the kernels read, or is refused at start-up.

The host's ISA is forced through what vLLM 0.32's `_get_attn_isa` asks
(`torch.cpu._is_amx_tile_supported`, `current_platform.get_cpu_architecture`),
so AMX and ARM hosts are tested on any x86 machine, without starting an engine.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from vllm.engine.arg_utils import EngineArgs
from vllm.model_executor.layers.attention import Attention
from vllm.platforms import CpuArchEnum, current_platform
from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend, CPUAttentionMetadataBuilder

from asl_vllm.config import ADDITIONAL_CONFIG_KEY, PrunerConfig, PrunerConfigError
from asl_vllm.engine_settings import apply_engine_settings
from asl_vllm.scoring.kv_layout import KVLayout, layer_layout

LAYER = "model.layers.0.self_attn.attn"
PRUNING = PrunerConfig(pruner="asl")


@pytest.fixture
def amx_host(monkeypatch):
    """vLLM sees AMX tiles on an x86 host."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    monkeypatch.setattr(current_platform, "get_cpu_architecture", lambda: CpuArchEnum.X86)


def _cpu_layer() -> Attention:
    """An `Attention` layer as vLLM's builder finds it in the forward context (no weights needed)."""
    layer = Attention.__new__(Attention)
    torch.nn.Module.__init__(layer)
    layer.impl = SimpleNamespace(num_heads=4, sliding_window=None)
    layer.attn_backend = CPUAttentionBackend
    layer.kv_cache_dtype = "auto"
    return layer


def _build(config: PrunerConfig) -> tuple[CPUAttentionMetadataBuilder, Attention]:
    """vLLM's CPU attention builder for one bfloat16 layer (block size 128, head size 64) of an engine."""
    layer = _cpu_layer()
    vllm_config = SimpleNamespace(
        parallel_config=None,
        model_config=SimpleNamespace(dtype=torch.bfloat16, get_num_attention_heads=lambda parallel: 4),
        cache_config=SimpleNamespace(cache_dtype="auto"),
        compilation_config=SimpleNamespace(static_forward_context={LAYER: layer}),
        additional_config={ADDITIONAL_CONFIG_KEY: config.to_dict()},
    )
    spec = SimpleNamespace(block_size=128, num_kv_heads=1, head_size=64)
    return CPUAttentionMetadataBuilder(spec, [LAYER], vllm_config, torch.device("cpu")), layer


@pytest.mark.parametrize("config", [PRUNING, PrunerConfig()], ids=["pruning", "no-pruner"])
def test_on_an_amx_host_every_engine_keeps_amx_which_the_kernels_read(model_path, amx_host, config):
    apply_engine_settings(EngineArgs(model=model_path), PRUNING)
    builder, layer = _build(config)
    assert builder.isa == layer.isa == "amx"
    assert layer_layout(layer) == KVLayout("CPU_ATTN", "auto", "amx")


@pytest.mark.parametrize(
    ("arch", "isa"), [(CpuArchEnum.ARM, "neon"), (CpuArchEnum.S390X, "vxe"), (CpuArchEnum.POWERPC, "vsx")]
)
def test_hosts_with_only_unreadable_isas_are_refused_at_configuration(model_path, monkeypatch, arch, isa):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(current_platform, "get_cpu_architecture", lambda: arch)
    with pytest.raises(PrunerConfigError, match=rf"^--kv-pruner: asl cannot be used here: .*'{isa}' kernels"):
        apply_engine_settings(EngineArgs(model=model_path), PRUNING)
