"""What the CPU and CUDA pruning workers share: they swap in the pruning model runner."""

from __future__ import annotations

from typing import Any


class PruningWorkerMixin:
    """Mixed into a vLLM worker class; `runner_cls` is that platform's pruning model runner."""

    runner_cls: type

    def init_device(self) -> None:
        super().init_device()
        self.model_runner = self.runner_cls(self.vllm_config, self.device)

    def take_pruner_decisions(self) -> list[dict[str, Any]]:
        """Decisions made since the last call, as plain dicts (reachable by `collective_rpc`)."""
        return [decision.to_dict() for decision in self.model_runner.take_pruner_decisions()]

    def pruning_steps_run(self) -> int:
        """Steps that ran the pruning layer loop instead of vLLM's forward (reachable by `collective_rpc`)."""
        return self.model_runner.pruning_step.steps_run
