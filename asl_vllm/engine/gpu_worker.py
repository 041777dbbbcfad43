"""CUDA worker named by `--kv-pruner`: vLLM's V1 GPU worker with the pruning model runner."""

from __future__ import annotations

from vllm.v1.worker.gpu_model_runner import GPUModelRunner
from vllm.v1.worker.gpu_worker import Worker

from asl_vllm.engine.model_runner import PruningRunnerMixin
from asl_vllm.engine.worker_mixin import PruningWorkerMixin


class PruningGPUModelRunner(PruningRunnerMixin, GPUModelRunner):
    pass


class PruningGPUWorker(PruningWorkerMixin, Worker):
    runner_cls = PruningGPUModelRunner
