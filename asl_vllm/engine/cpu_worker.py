"""CPU worker named by `--kv-pruner`: vLLM's CPU worker building the pruning model runner."""

from __future__ import annotations

from typing import Any

from vllm.v1.worker.cpu_model_runner import CPUModelRunner
from vllm.v1.worker.cpu_worker import CPUWorker

from asl_vllm.engine.model_runner import PruningRunnerMixin
from asl_vllm.engine.worker_mixin import PruningWorkerMixin
from asl_vllm.vllm_compat.cpu_sampling import discarded_samples_without_generators
from asl_vllm.vllm_compat.cpu_worker_runner import building_cpu_runner


class PruningCPUModelRunner(PruningRunnerMixin, CPUModelRunner):
    def sample_tokens(self, *args: Any, **kwargs: Any) -> Any:
        """vLLM's sampling, without the CPU build's crash on a seeded request's chunked prefill."""
        with discarded_samples_without_generators(self):
            return super().sample_tokens(*args, **kwargs)


class PruningCPUWorker(PruningWorkerMixin, CPUWorker):
    def init_device(self) -> None:
        """Build one runner, ours (vLLM's CPU worker has no runner factory: `building_cpu_runner`)."""
        with building_cpu_runner(PruningCPUModelRunner):
            super().init_device()
        if not isinstance(self.model_runner, PruningCPUModelRunner):
            raise RuntimeError(
                f"vLLM's CPU worker built {type(self.model_runner).__name__}, not the pruning model runner"
            )
