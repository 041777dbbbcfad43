"""What the CPU and CUDA pruning workers share: reporting the pruner's decisions."""

from __future__ import annotations

from typing import Any


class PruningWorkerMixin:
    """Mixed into a vLLM worker class whose model runner is a pruning model runner."""

    def take_pruner_decisions(self) -> list[dict[str, Any]]:
        """Decisions made since the last call, as plain dicts (reachable by `collective_rpc`)."""
        return [decision.to_dict() for decision in self.model_runner.take_pruner_decisions()]

    def pruning_steps_run(self) -> int:
        """Steps that ran the pruning layer loop instead of vLLM's forward (reachable by `collective_rpc`)."""
        return self.model_runner.layer_loop.steps_run

    def pruned_requests_held(self) -> int:
        """Requests whose KV offsets this worker still applies (reachable by `collective_rpc`, one per rank)."""
        return self.model_runner.pruned_requests_held()
