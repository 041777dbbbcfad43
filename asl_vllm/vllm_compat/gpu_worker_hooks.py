"""How vLLM's GPU worker is made to build a plugin's model runner.

vLLM 0.32: `Worker._make_model_runner` (vllm/v1/worker/gpu_worker.py) is the
private factory `Worker.init_device` builds its one runner with.
`GPUWorkerHooks` overrides it to call the hook `build_model_runner`.

Nothing here (or anything the CUDA worker imports) may import vLLM's CPU
worker: `vllm/v1/worker/cpu/shm.py` rewrites torch's CUDA streams, events,
memory info and `Tensor.pin_memory` process-wide when imported.
"""

from __future__ import annotations

from typing import Any

from vllm.v1.worker.gpu_worker import Worker


class GPUWorkerHooks(Worker):
    """A subclass implements `build_model_runner`."""

    def build_model_runner(self) -> Any:
        """The model runner this worker runs."""
        raise NotImplementedError

    def _make_model_runner(self) -> Any:
        return self.build_model_runner()
