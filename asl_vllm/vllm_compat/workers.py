"""How vLLM's CPU and GPU workers are made to build a plugin's model runner.

vLLM 0.32:
- `Worker._make_model_runner` (vllm/v1/worker/gpu_worker.py): the private
  factory `Worker.init_device` builds its one runner with. `GPUWorkerHooks`
  overrides it to call the hook `build_model_runner`.
- `CPUWorker.init_device` (vllm/v1/worker/cpu_worker.py) has no factory: it
  builds `CPUModelRunner` by that name in its module. `building_cpu_runner`
  rebinds the name while a worker initializes (a worker process builds one
  worker).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from vllm.v1.worker import cpu_worker
from vllm.v1.worker.gpu_worker import Worker


class GPUWorkerHooks(Worker):
    """A subclass implements `build_model_runner`."""

    def build_model_runner(self) -> Any:
        """The model runner this worker runs."""
        raise NotImplementedError

    def _make_model_runner(self) -> Any:
        return self.build_model_runner()


@contextlib.contextmanager
def building_cpu_runner(runner_class: type) -> Iterator[None]:
    """Within the block, vLLM's `CPUWorker.init_device` builds `runner_class` for its `CPUModelRunner`."""
    vllm_runner = cpu_worker.CPUModelRunner
    cpu_worker.CPUModelRunner = runner_class
    try:
        yield
    finally:
        cpu_worker.CPUModelRunner = vllm_runner
