"""vLLM's workers build a plugin's model runner: the GPU worker through its factory, the CPU worker by name."""

from __future__ import annotations

import inspect

import pytest
from vllm.v1.worker import cpu_worker, gpu_worker

from asl_vllm.vllm_compat.cpu_worker_runner import building_cpu_runner
from asl_vllm.vllm_compat.gpu_worker_hooks import GPUWorkerHooks


class _Runner:
    pass


class _Worker(GPUWorkerHooks):
    def build_model_runner(self) -> _Runner:
        return _Runner()


def test_gpu_worker_builds_its_one_runner_through_the_hook():
    # vLLM's Worker builds its runner once, through `_make_model_runner`; the hook replaces only that.
    assert "self._make_model_runner()" in inspect.getsource(gpu_worker.Worker)
    assert isinstance(object.__new__(_Worker)._make_model_runner(), _Runner)


def test_cpu_worker_builds_the_runner_named_in_its_module():
    # vLLM's CPUWorker builds `CPUModelRunner` by its module name in `init_device`, with no factory.
    assert "CPUModelRunner(self.vllm_config" in inspect.getsource(cpu_worker.CPUWorker.init_device)
    vllm_runner = cpu_worker.CPUModelRunner
    with building_cpu_runner(_Runner):
        assert cpu_worker.CPUModelRunner is _Runner
    assert cpu_worker.CPUModelRunner is vllm_runner
    with pytest.raises(RuntimeError), building_cpu_runner(_Runner):
        raise RuntimeError("init_device failed")
    assert cpu_worker.CPUModelRunner is vllm_runner
