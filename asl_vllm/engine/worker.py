"""CPU worker named by `--kv-pruner`: vLLM's CPU worker with the pruning model runner."""

from __future__ import annotations

from vllm.v1.worker.cpu_model_runner import CPUModelRunner
from vllm.v1.worker.cpu_worker import CPUWorker

from asl_vllm.engine.model_runner import PruningRunnerMixin
from asl_vllm.engine.worker_mixin import PruningWorkerMixin


class PruningCPUModelRunner(PruningRunnerMixin, CPUModelRunner):
    pass


class PruningCPUWorker(PruningWorkerMixin, CPUWorker):
    runner_cls = PruningCPUModelRunner
