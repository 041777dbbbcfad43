"""CUDA worker named by `--kv-pruner`: vLLM's V1 GPU worker with the pruning model runner."""

from __future__ import annotations

from typing import Any

from vllm.v1.worker.gpu_model_runner import GPUModelRunner
from vllm.v1.worker.gpu_worker import Worker

from asl_vllm.engine.model_runner import PruningRunnerMixin


class PruningGPUModelRunner(PruningRunnerMixin, GPUModelRunner):
    pass


class PruningGPUWorker(Worker):
    def init_device(self) -> None:
        super().init_device()
        self.model_runner = PruningGPUModelRunner(self.vllm_config, self.device)

    def take_pruner_decisions(self) -> list[dict[str, Any]]:
        return [decision.to_dict() for decision in self.model_runner.take_pruner_decisions()]
