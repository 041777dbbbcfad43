"""CPU worker named by `--kv-pruner`: vLLM's CPU worker building the pruning model runner."""

from __future__ import annotations

from vllm.v1.worker import cpu_worker
from vllm.v1.worker.cpu_model_runner import CPUModelRunner

from asl_vllm.engine.model_runner import PruningRunnerMixin
from asl_vllm.engine.worker_mixin import PruningWorkerMixin


class PruningCPUModelRunner(PruningRunnerMixin, CPUModelRunner):
    pass


class PruningCPUWorker(PruningWorkerMixin, cpu_worker.CPUWorker):
    def init_device(self) -> None:
        """Build one runner, ours.

        vLLM 0.32's `CPUWorker.init_device` has no runner factory: it builds
        `CPUModelRunner` by that name in its module, so the name means the
        pruning runner while it runs (the worker process builds one worker).
        """
        vllm_runner = cpu_worker.CPUModelRunner
        cpu_worker.CPUModelRunner = PruningCPUModelRunner
        try:
            super().init_device()
        finally:
            cpu_worker.CPUModelRunner = vllm_runner
        if not isinstance(self.model_runner, PruningCPUModelRunner):
            raise RuntimeError(
                f"vLLM's CPU worker built {type(self.model_runner).__name__}, not the pruning model runner"
            )
