"""CPU worker named by `--kv-pruner`: vLLM's CPU worker with the pruning model runner."""

from __future__ import annotations

from typing import Any

from vllm.v1.worker.cpu_model_runner import CPUModelRunner
from vllm.v1.worker.cpu_worker import CPUWorker

from asl_vllm.engine.model_runner import PruningRunnerMixin


class PruningCPUModelRunner(PruningRunnerMixin, CPUModelRunner):
    pass


class PruningCPUWorker(CPUWorker):
    def init_device(self) -> None:
        super().init_device()
        self.model_runner = PruningCPUModelRunner(self.vllm_config, self.device)

    def take_pruner_decisions(self) -> list[dict[str, Any]]:
        """Decisions made since the last call, as plain dicts (reachable by `collective_rpc`)."""
        return [decision.to_dict() for decision in self.model_runner.take_pruner_decisions()]
