"""How vLLM's GPU worker is made to build a plugin's model runner.

vLLM 0.32: `Worker._make_model_runner` (vllm/v1/worker/gpu_worker.py) is the
private factory `Worker.init_device` builds its one runner with.
`GPUWorkerHooks` overrides it to call the hook `build_model_runner`, which may
ask `uses_v2_model_runner` (`Worker.use_v2_model_runner`, set in `__init__`):
whether this worker runs the V2 model runner, which a V1 runner subclass cannot replace.

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

    def uses_v2_model_runner(self) -> bool:
        """Whether vLLM chose its V2 model runner for this worker (`Worker.use_v2_model_runner`)."""
        return self.use_v2_model_runner

    def _make_model_runner(self) -> Any:
        return self.build_model_runner()
