"""The CUDA worker path imports nothing of vLLM's CPU worker.

vLLM 0.32's `vllm/v1/worker/cpu/shm.py` (imported by `cpu_worker`) replaces
process-wide torch state for the CPU when its module body runs:
`torch.cuda.Event`/`Stream`, `torch.accelerator.synchronize`,
`Tensor.pin_memory`, `torch.accelerator.get_memory_info`. On a GPU that would
size the KV cache from host memory and break CUDA graph capture. vLLM's own
GPU worker and runner import cleanly on this CPU, so the same check holds here.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_PROBE = """
import json, sys, importlib
import torch
originals = {
    "torch.cuda.Event": torch.cuda.Event,
    "torch.cuda.Stream": torch.cuda.Stream,
    "torch.cuda.current_stream": torch.cuda.current_stream,
    "torch.accelerator.synchronize": torch.accelerator.synchronize,
    "torch.accelerator.get_memory_info": torch.accelerator.get_memory_info,
    "torch.Tensor.pin_memory": torch.Tensor.pin_memory,
}
for name in sys.argv[1:]:
    importlib.import_module(name)
now = {
    "torch.cuda.Event": torch.cuda.Event,
    "torch.cuda.Stream": torch.cuda.Stream,
    "torch.cuda.current_stream": torch.cuda.current_stream,
    "torch.accelerator.synchronize": torch.accelerator.synchronize,
    "torch.accelerator.get_memory_info": torch.accelerator.get_memory_info,
    "torch.Tensor.pin_memory": torch.Tensor.pin_memory,
}
print(json.dumps({
    "replaced": sorted(key for key in originals if originals[key] is not now[key]),
    "cpu_modules": sorted(
        m for m in sys.modules if m.startswith(("vllm.v1.worker.cpu", "vllm.v1.attention.backends.cpu"))
    ),
}))
"""


def _imports(*modules: str) -> dict[str, list[str]]:
    """What importing `modules` in a fresh interpreter replaced in torch, and which CPU worker modules it loaded."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules], capture_output=True, text=True, timeout=300, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_vllms_own_gpu_worker_imports_cleanly_here():
    # The precondition that makes the next test meaningful on a CPU-only host.
    assert _imports("vllm.v1.worker.gpu_worker", "vllm.v1.worker.gpu_model_runner") == {
        "replaced": [],
        "cpu_modules": [],
    }


@pytest.mark.parametrize("entry", ["asl_vllm.engine.gpu_worker", "asl_vllm.plugin"])
def test_the_cuda_worker_path_leaves_torch_and_vllms_cpu_worker_alone(entry):
    assert _imports(entry) == {"replaced": [], "cpu_modules": []}


def test_the_cpu_worker_path_does_load_vllms_cpu_worker():
    # The probe sees the replacement where it happens: the CPU worker's own path.
    seen = _imports("asl_vllm.engine.cpu_worker")
    assert "torch.Tensor.pin_memory" in seen["replaced"]
    assert "vllm.v1.worker.cpu_worker" in seen["cpu_modules"]
