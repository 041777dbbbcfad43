"""Per-request pruner settings from OpenAI `vllm_xargs` (`SamplingParams.extra_args`).

The server's config is the default and the ceiling: a request may switch its
pruner (or turn pruning off) and tighten tau, select-k and budget.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from asl_vllm.config import PrunerConfig, PrunerConfigError

# vllm_xargs key -> PrunerConfig field.
REQUEST_KEYS = {
    "kv_pruner": "pruner",
    "kv_budget": "kv_budget",
    "asl_tau": "tau",
    "asl_select_k": "select_k",
}


def request_config(server: PrunerConfig, extra_args: dict[str, Any] | None) -> PrunerConfig:
    """The effective config of one request; raises PrunerConfigError naming the field."""
    if not server.enabled or not extra_args:
        return server
    changes = {REQUEST_KEYS[key]: value for key, value in extra_args.items() if key in REQUEST_KEYS}
    if not changes:
        return server
    pruner = changes.get("pruner", server.pruner)
    if pruner == "none":
        return dataclasses.replace(server, pruner="none")
    if server.kv_budget is not None and changes.get("kv_budget") is None:
        changes.pop("kv_budget", None)
    merged = {**server.to_dict(), **changes}
    if pruner not in ("fastkv", "gemfilter"):
        merged["fixed_layer"] = None
    try:
        config = PrunerConfig(**merged).validate()
    except PrunerConfigError as error:
        key = next((k for k, f in REQUEST_KEYS.items() if error.flag.endswith(f.replace("_", "-"))), None)
        raise PrunerConfigError(key or error.flag, str(error).split(": ", 1)[-1]) from None
    if server.kv_budget is not None and (config.kv_budget is None or config.kv_budget > server.kv_budget):
        raise PrunerConfigError("kv_budget", f"must be <= the server's --kv-budget ({server.kv_budget})")
    return config


def prefill_prune_config(
    server: PrunerConfig, sampling_params: Any, num_tokens: int, num_layers: int
) -> PrunerConfig | None:
    """The config a prefill of `num_tokens` is pruned with, or None when it is not pruned.

    Called by both the scheduler (to free blocks) and the worker (to prune), so
    the two always agree. Invalid per-request settings are rejected by the
    frontend before they reach here; if one does, the request is not pruned.
    """
    if not server.enabled or sampling_params is None:
        return None
    if getattr(sampling_params, "prompt_logprobs", None) is not None:
        return None
    try:
        config = request_config(server, getattr(sampling_params, "extra_args", None)).resolve(num_layers)
    except PrunerConfigError:
        return None
    if not config.enabled or num_tokens <= config.window:
        return None
    keep = num_tokens if config.pruner == "snapkv" else config.select_k
    if config.kv_budget is not None:
        keep = min(keep, config.kv_budget)
    return config if keep < num_tokens else None
