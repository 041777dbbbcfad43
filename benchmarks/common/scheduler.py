"""The vLLM scheduler settings every timing benchmark gives every engine and server it starts.

A pruning engine runs without async scheduling (its blocks are freed from a step's results),
so a timing against vLLM is fair only when vLLM runs under the same scheduler: the same token
budget per step, chunked prefill and async scheduling. The settings are passed explicitly to
every engine, the baseline included, whatever vLLM's or the plugin's defaults are; the
`none,vllm-default` row is vLLM with none of them: its own defaults.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Any

# vLLM's per-step token budget of `vllm serve` on its CPU build (`EngineArgs`, OPENAI_API_SERVER).
DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048


@dataclass(frozen=True)
class SchedulerSettings:
    """`vllm.LLM` keyword arguments / `vllm serve` flags of the scheduler, the same for every engine."""

    max_num_batched_tokens: int = DEFAULT_MAX_NUM_BATCHED_TOKENS
    enable_chunked_prefill: bool = True
    async_scheduling: bool = False

    def engine_args(self) -> dict[str, Any]:
        return asdict(self)


def add_scheduler_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-num-batched-tokens",
        type=int,
        default=DEFAULT_MAX_NUM_BATCHED_TOKENS,
        help="tokens per engine step, given to every engine and server (baseline included; chunked prefill on, "
        "async scheduling off for all, since pruning turns it off); `none,vllm-default` runs vLLM's own defaults",
    )


def scheduler_of(args: argparse.Namespace) -> SchedulerSettings:
    return SchedulerSettings(max_num_batched_tokens=args.max_num_batched_tokens)
