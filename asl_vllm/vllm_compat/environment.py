"""The environment variables the plugin sets for vLLM, where vLLM 0.32 has no config field instead.

- `VLLM_USE_V2_MODEL_RUNNER` (vllm/envs.py; read by `VllmConfig.use_v2_model_runner`
  in every process): the pruning runner extends the V1 GPU model runner, and
  vLLM 0.32 makes V2 the default on CUDA.
- `VLLM_CPU_KVCACHE_SPACE` (vllm/envs.py; the CPU build's KV cache size in GiB):
  a default for `asl-vllm-serve`'s embedded model, before it starts `vllm serve`.
"""

from __future__ import annotations

import os


def pin_v1_model_runner() -> None:
    """This process and the engine processes it starts run vLLM's V1 model runner."""
    os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "0"


def default_cpu_kv_cache_space(gib: int) -> None:
    """The CPU build's KV cache size for the `vllm` process this one starts, unless the user set it."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(gib))
