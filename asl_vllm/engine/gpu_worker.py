"""CUDA worker named by `--kv-pruner`: vLLM's V1 GPU worker building the pruning model runner."""

from __future__ import annotations

from vllm.v1.worker.gpu_model_runner import GPUModelRunner
from vllm.v1.worker.gpu_worker import Worker

from asl_vllm.engine.model_runner import PruningRunnerMixin
from asl_vllm.engine.worker_mixin import PruningWorkerMixin


class PruningGPUModelRunner(PruningRunnerMixin, GPUModelRunner):
    pass


class PruningGPUWorker(PruningWorkerMixin, Worker):
    def _make_model_runner(self) -> PruningGPUModelRunner:
        """vLLM's own factory, so the worker builds one runner: ours (the V1 runner, which the plugin pins)."""
        if self.use_v2_model_runner:
            raise RuntimeError("KV pruning extends vLLM's V1 model runner; unset VLLM_USE_V2_MODEL_RUNNER")
        return PruningGPUModelRunner(self.vllm_config, self.device)
