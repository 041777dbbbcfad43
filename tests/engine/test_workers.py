"""Each pruning worker builds exactly one model runner, the pruning one, through vLLM's own seam."""

from __future__ import annotations

import pytest
from vllm.v1.worker import cpu_worker, gpu_worker

from asl_vllm.engine import gpu_worker as pruning_gpu_worker
from asl_vllm.engine.cpu_worker import PruningCPUModelRunner, PruningCPUWorker
from asl_vllm.engine.gpu_worker import PruningGPUWorker


class _Recorded:
    def __init__(self, vllm_config, device):
        self.args = (vllm_config, device)


def _gpu_worker(v2: bool) -> PruningGPUWorker:
    """A worker as vLLM's `Worker.__init__` leaves it, without a device."""
    worker = object.__new__(PruningGPUWorker)
    worker.use_v2_model_runner, worker.vllm_config, worker.device = v2, "config", "cuda:0"
    return worker


def test_gpu_worker_builds_the_pruning_runner(monkeypatch):
    # vLLM's Worker builds its runner once, through its factory; the pruning worker changes only that.
    assert PruningGPUWorker.init_device is gpu_worker.Worker.init_device
    monkeypatch.setattr(pruning_gpu_worker, "PruningGPUModelRunner", _Recorded)
    runner = PruningGPUWorker.build_model_runner(_gpu_worker(v2=False))
    assert isinstance(runner, _Recorded) and runner.args == ("config", "cuda:0")


def test_gpu_worker_refuses_the_v2_runner():
    with pytest.raises(RuntimeError, match="V1 model runner"):
        PruningGPUWorker.build_model_runner(_gpu_worker(v2=True))


def _fake_cpu_init(seen):
    def init_device(self):
        seen.append(cpu_worker.CPUModelRunner)
        self.model_runner = object.__new__(cpu_worker.CPUModelRunner)

    return init_device


def test_cpu_worker_builds_the_pruning_runner_by_vllms_own_name(monkeypatch):
    vllm_runner = cpu_worker.CPUModelRunner
    seen = []
    monkeypatch.setattr(cpu_worker.CPUWorker, "init_device", _fake_cpu_init(seen))
    worker = object.__new__(PruningCPUWorker)
    worker.init_device()
    assert seen == [PruningCPUModelRunner]
    assert type(worker.model_runner) is PruningCPUModelRunner
    assert cpu_worker.CPUModelRunner is vllm_runner


def test_cpu_worker_says_so_when_vllm_builds_another_runner(monkeypatch):
    def init_device(self):
        self.model_runner = object()

    monkeypatch.setattr(cpu_worker.CPUWorker, "init_device", init_device)
    with pytest.raises(RuntimeError, match="not the pruning model runner"):
        object.__new__(PruningCPUWorker).init_device()
    assert cpu_worker.CPUModelRunner is not PruningCPUModelRunner
