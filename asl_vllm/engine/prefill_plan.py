"""What the scheduler decided for one prefill to prune, sent once to the worker on the step's output.

Whether a prefill is pruned, and with which settings, is decided in one place:
the scheduler's `PrefillPlanner`. It resolves a request's settings the first
time the scheduler asks (`prefill_prune_config`: the server's config, the
request's overrides, the model depth, whether the prompt is long enough to
prune) and keeps them until the request finishes or is preempted (a recompute
re-plans). vLLM chunks a prompt to prune as it chunks any other
(`--max-num-batched-tokens`, `long_prefill_token_threshold`), except that its
last chunk holds at least the window (`chunk_tokens`): the decision needs the
window's queries. In the step that runs the last chunk the planner builds the
`PrefillPlan`, choosing an auto budget from the pool's usage where the request
has one (`asl_vllm.pressure.auto_budget`); the plan reaches the worker on that
step's `SchedulerOutput` (`asl_vllm.engine.step_plan`), and the worker runs it
as given and never re-derives it.

Two-pass pruners (gemfilter, asl two-pass) re-run the model from the
embeddings of the tokens they select, which a step holding only the last chunk
does not have: their prompts keep the whole-prefill rule (a prompt to prune
waits for a step that runs it whole; one longer than a step is served
unpruned, and the log says why).
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
    # Steps the prefill took, this one included (chunked prefill).
    prefill_steps: int = 1


def runs_whole(config: PrunerConfig) -> bool:
    """Whether the pruner needs its whole prompt in one step: a two-pass re-run embeds the selected tokens."""
    return config.two_pass or config.pruner_class.two_pass


def chunk_tokens(num_computed: int, num_tokens: int, num_new: int, window: int) -> int:
    """Of the `num_new` prompt tokens vLLM would schedule now, how many to schedule so that the prompt's last
    chunk holds at least the window (0: none now)."""
    remaining = num_tokens - num_computed
    if num_new >= remaining or remaining - num_new >= window:
        return num_new
    return max(remaining - window, 0)


class PrefillPlanner:
    """The scheduler's settings of each unfinished request's prefill, resolved once, and the plans built from them."""

    def __init__(self, server: PrunerConfig, num_layers: int, max_prefill_tokens: int) -> None:
        """`max_prefill_tokens`: the most prompt tokens one step runs (what a two-pass pruner's prompt must fit)."""
        self.server = server
        self.num_layers = num_layers
        self.max_prefill_tokens = max_prefill_tokens
        # Per request: the settings its prefill is pruned with, None when it is not pruned.
        self._configs: dict[str, PrunerConfig | None] = {}
        # Per request to prune still prefilling: the steps its prefill has been scheduled in so far.
        self._prefill_steps: dict[str, int] = {}
        # Requests whose plan was sent: their later steps are decodes.
        self._planned: set[str] = set()

    def config(self, req_id: str, sampling_params: Any, num_tokens: int) -> PrunerConfig | None:
        """The settings the request's prefill of `num_tokens` is pruned with (None: not pruned)."""
        if req_id not in self._configs:
            config = prefill_prune_config(self.server, sampling_params, num_tokens, self.num_layers)
            if config is not None and runs_whole(config) and num_tokens > self.max_prefill_tokens:
                logger.info(
                    "asl-vllm: request %s is served unpruned: --kv-pruner %s re-runs the model on the tokens it "
                    "selects, so it needs the whole prompt in one step, and its %d tokens do not fit one step's "
                    "token budget (%d; --max-num-batched-tokens)",
                    req_id,
                    config.pruner,
                    num_tokens,
                    self.max_prefill_tokens,
                )
                config = None
            self._configs[req_id] = config
        return self._configs[req_id]

    def tokens_to_schedule(self, request: Any, num_new_tokens: int) -> int:
        """How many of the `num_new_tokens` prompt tokens vLLM would schedule for `request` now to schedule."""
        remaining = request.num_tokens - request.num_computed_tokens
        if num_new_tokens >= remaining:
            return num_new_tokens
        config = self.config(request.request_id, request.sampling_params, request.num_tokens)
        if config is None:
            return num_new_tokens
        if runs_whole(config):
            return 0  # wait for a step that runs the prompt whole
        return chunk_tokens(request.num_computed_tokens, request.num_tokens, num_new_tokens, config.window)

    def plan(self, request: Any, usage: float) -> PrefillPlan | None:
        """After `schedule()` scheduled `request`: the plan of its prefill when this step runs its last chunk
        (None: not pruned, still chunking, or planned before).

        `usage`: the pool's usage once the step's blocks are allocated, which an auto budget is chosen from."""
        req_id, num_tokens = request.request_id, request.num_tokens
        if req_id in self._planned:
            return None
        config = self.config(req_id, request.sampling_params, num_tokens)
        if config is None:
            return None
        steps = self._prefill_steps.pop(req_id, 0) + 1
        if request.num_computed_tokens < num_tokens:
            self._prefill_steps[req_id] = steps
            return None
        self._planned.add(req_id)
        if not config.budget_auto:
            return PrefillPlan(req_id, config, num_tokens, prefill_steps=steps)
        budget = auto_budget(
            usage, num_tokens, config.budget_min, config.kv_budget_auto_low, config.kv_budget_auto_high
        )
        if budget is not None and config.pruner_class.selects:
            budget = min(budget, config.select_k)
        return PrefillPlan(req_id, config.with_budget(budget), num_tokens, keeps_scores=True, prefill_steps=steps)

    def forget(self, req_id: str) -> None:
        """The request finished or was preempted: a recompute resolves its settings afresh."""
        self._configs.pop(req_id, None)
        self._prefill_steps.pop(req_id, None)
        self._planned.discard(req_id)
