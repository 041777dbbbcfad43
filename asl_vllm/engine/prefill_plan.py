"""What the scheduler decided for one prefill to prune, sent once to the worker on the step's output.

The scheduler resolves a request's pruner settings when it first schedules its
prefill (`prefill_prune_config`: the server's config, the request's overrides,
the model depth, whether the prompt is long enough to prune), chooses its auto
budget from the pool's usage where it has one, and sends the result; the worker
runs it as given and never re-derives it.
"""

from __future__ import annotations

from dataclasses import dataclass

from asl_vllm.config import PrunerConfig


@dataclass(frozen=True)
class PrefillPlan:
    req_id: str
    # The request's resolved settings; with `--kv-budget auto`, `kv_budget` is the budget chosen for it
    # (None: full KV), so the worker reads one budget whatever the server's mode.
    config: PrunerConfig
    num_prompt_tokens: int
    # An auto-budget request: its kept tokens' scores are kept too, so that it can be shrunk later.
    keeps_scores: bool = False
