"""What the scheduler decided for one prefill to prune, sent once to the worker on the step's output.

Whether a prefill is pruned, and with which settings, is decided in one place:
the scheduler's `PrefillPlanner`. It resolves a request's settings the first
time the scheduler asks (`prefill_prune_config`: the server's config, the
request's overrides, the model depth, whether the prompt is long enough to
prune; and whether it fits one step, since a pruned prompt is never split) and
keeps them until the request finishes or is preempted (a recompute re-plans).
In the step that runs the prefill it builds the `PrefillPlan`, choosing an auto
budget from the pool's usage where the request has one
(`asl_vllm.pressure.auto_budget`); the plan reaches the worker on that step's
`SchedulerOutput` (`asl_vllm.engine.step_plan`), and the worker runs it as
given and never re-derives it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asl_vllm.config import PrunerConfig
from asl_vllm.log import logger
from asl_vllm.pressure import auto_budget
from asl_vllm.request_config import prefill_prune_config


@dataclass(frozen=True)
class PrefillPlan:
    req_id: str
    # The request's resolved settings; with `--kv-budget auto`, `kv_budget` is the budget chosen for it
    # (None: full KV), so the worker reads one budget whatever the server's mode.
    config: PrunerConfig
    num_prompt_tokens: int
    # An auto-budget request: its kept tokens' scores are kept too, so that it can be shrunk later.
    keeps_scores: bool = False


class PrefillPlanner:
    """The scheduler's settings of each unfinished request's prefill, resolved once, and the plans built from them."""

    def __init__(self, server: PrunerConfig, num_layers: int, max_prefill_tokens: int) -> None:
        """`max_prefill_tokens`: the most prompt tokens one step runs; a longer prompt is chunked, so never pruned."""
        self.server = server
        self.num_layers = num_layers
        self.max_prefill_tokens = max_prefill_tokens
        # Per request: the settings its prefill is pruned with, None when it is not pruned.
        self._configs: dict[str, PrunerConfig | None] = {}

    def config(self, req_id: str, sampling_params: Any, num_tokens: int) -> PrunerConfig | None:
        """The settings the request's prefill of `num_tokens` is pruned with (None: not pruned)."""
        if req_id not in self._configs:
            config = prefill_prune_config(self.server, sampling_params, num_tokens, self.num_layers)
            if config is not None and num_tokens > self.max_prefill_tokens:
                logger.info(
                    "asl-vllm: request %s is served unpruned: its %d tokens do not fit one step's token budget "
                    "(%d; --max-num-batched-tokens)",
                    req_id,
                    num_tokens,
                    self.max_prefill_tokens,
                )
                config = None
            self._configs[req_id] = config
        return self._configs[req_id]

    def plan(self, req_id: str, sampling_params: Any, num_tokens: int, usage: float) -> PrefillPlan | None:
        """The plan of the request's prefill, run whole in the step being scheduled (None: not pruned).

        `usage`: the pool's usage once the step's blocks are allocated, which an auto budget is chosen from."""
        config = self.config(req_id, sampling_params, num_tokens)
        if config is None:
            return None
        if not config.budget_auto:
            return PrefillPlan(req_id, config, num_tokens)
        budget = auto_budget(
            usage, num_tokens, config.budget_min, config.kv_budget_auto_low, config.kv_budget_auto_high
        )
        if budget is not None and config.method.selects:
            budget = min(budget, config.select_k)
        return PrefillPlan(req_id, config.with_budget(budget), num_tokens, keeps_scores=True)

    def forget(self, req_id: str) -> None:
        """The request finished or was preempted: a recompute resolves its settings afresh."""
        self._configs.pop(req_id, None)
