"""CUDA worker named by `--kv-pruner`: vLLM's V1 GPU worker building the pruning model runner."""

from __future__ import annotations

from vllm.v1.worker.gpu_model_runner import GPUModelRunner

from asl_vllm.engine.model_runner import PruningRunnerMixin
from asl_vllm.engine.worker_mixin import PruningWorkerMixin
from asl_vllm.vllm_compat.gpu_worker_hooks import GPUWorkerHooks


class PruningGPUModelRunner(PruningRunnerMixin, GPUModelRunner):
    pass


class PruningGPUWorker(PruningWorkerMixin, GPUWorkerHooks):
    def build_model_runner(self) -> PruningGPUModelRunner:
        """Through vLLM's own factory, so the worker builds one runner: ours (the V1 runner, which the plugin pins)."""
        if self.uses_v2_model_runner():
            raise RuntimeError("KV pruning extends vLLM's V1 model runner; unset VLLM_USE_V2_MODEL_RUNNER")
        return PruningGPUModelRunner(self.vllm_config, self.device)
