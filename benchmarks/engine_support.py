"""Which of the benchmarked settings the installed plugin accepts.

A request field the engine does not know is ignored by it, so a configuration that
asks for a head mode on an engine without `--kv-budget-heads` would silently run the
engine's own rule under another name; it is recorded as not available instead.
"""

from __future__ import annotations

import functools

from benchmarks.pruners import Config

BUDGET_HEADS_FLAG = "--kv-budget-heads"


@functools.lru_cache(maxsize=1)
def engine_flags() -> frozenset[str]:
    """Every flag vLLM's engine parser offers here (the plugin adds its own to it)."""
    from vllm.engine.arg_utils import EngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = EngineArgs.add_cli_args(FlexibleArgumentParser())
    return frozenset(option for action in parser._actions for option in action.option_strings)


def unsupported(config: Config) -> str | None:
    """Why the installed engine cannot run `config`, or None when it can."""
    if config.heads is not None and BUDGET_HEADS_FLAG not in engine_flags():
        return f"this engine has no {BUDGET_HEADS_FLAG} (vllm_xargs kv_budget_heads would be ignored)"
    return None
