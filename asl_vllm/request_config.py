"""Per-request pruner settings from OpenAI `vllm_xargs` (`SamplingParams.extra_args`).

The server's config is the default and the ceiling: a request may switch its
pruner (or turn pruning off), tighten tau and select-k, lower the budget (or
ask for `"auto"` where the server has no fixed budget) and
switch ASL's two-pass re-run on or off. A request that switches to another
pruner gets that pruner's default fixed layer, and no two-pass unless it asks.
Errors name the request field, so the frontend can answer HTTP 400 with it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from asl_vllm.config import PrunerConfig
from asl_vllm.pruners.registry import has_capability
from asl_vllm.settings import AUTO_BUDGET, PrunerConfigError, settings_of


def request_config(server: PrunerConfig, extra_args: dict[str, Any] | None) -> PrunerConfig:
    """The effective config of one request; raises PrunerConfigError naming the request field.

    The request keys and each value's check come from the settings' declarations (`request_key`).
    """
    settings = settings_of(type(server))
    by_key = {declared.request_key: declared for declared in settings.values() if declared.request_key}
    changes = {
        by_key[key].name: by_key[key].request_value(value) for key, value in (extra_args or {}).items() if key in by_key
    }
    if not changes:
        return server
    first_key = settings[next(iter(changes))].request_key
    if not server.enabled:
        raise PrunerConfigError(first_key, "needs a server started with --kv-pruner")
    pruner = changes.get("pruner", server.pruner)
    if has_capability(pruner, "prunes") is False:
        return dataclasses.replace(server, pruner=pruner)
    if "kv_budget" in changes and changes["kv_budget"] is None and server.kv_budget is not None:
        raise PrunerConfigError("kv_budget", f"may not lift the server's --kv-budget ({server.kv_budget})")
    merged = {**server.to_dict(), **changes}
    if pruner != server.pruner:
        # The settings of the server's pruner (a fixed layer, two-pass) stay behind unless the request sets them.
        merged.update(
            {
                name: declared.default
                for name, declared in settings.items()
                if declared.capability and name not in changes
            }
        )
    if merged["kv_budget"] != AUTO_BUDGET:
        # A request fixing its own budget on a --kv-budget auto server leaves the auto settings behind.
        merged.update({name: declared.default for name, declared in settings.items() if declared.auto_budget_only})
    try:
        config = type(server)(**merged).validate()
    except PrunerConfigError as error:
        # A rule between two settings (e.g. window <= select-k) is blamed on a field the request set.
        blamed = [settings[name].request_key for name in changes if settings[name].flag == error.flag]
        raise PrunerConfigError((blamed or [first_key])[0], str(error).split(": ", 1)[-1]) from None
    if isinstance(server.kv_budget, int):
        if config.budget_auto:
            raise PrunerConfigError("kv_budget", f"may not lift the server's --kv-budget ({server.kv_budget})")
        if config.kv_budget > server.kv_budget:
            raise PrunerConfigError("kv_budget", f"must be <= the server's --kv-budget ({server.kv_budget})")
    return config


def requested_pruner(server: PrunerConfig, sampling_params: Any) -> str:
    """The pruner a request runs under (the server's unless it names a valid other one)."""
    try:
        return request_config(server, getattr(sampling_params, "extra_args", None)).pruner
    except PrunerConfigError:
        return server.pruner


def prefill_prune_config(
    server: PrunerConfig, sampling_params: Any, num_tokens: int, num_layers: int
) -> PrunerConfig | None:
    """The config a prefill of `num_tokens` is pruned with, or None when it is not pruned.

    Called by the scheduler once per request (`asl_vllm.engine.prefill_plan.PrefillPlanner`). Invalid
    per-request settings are rejected by the frontend before they reach here; if one does, the request is
    not pruned.
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
    if config.budget_auto:
        # Scored even when its chosen budget keeps every token (the scores let the scheduler shrink it
        # later), unless no budget could ever cut it: a prompt within the floor runs on vLLM's own path.
        return config if num_tokens > config.budget_min else None
    keep = config.select_k if config.pruner_class.selects else num_tokens
    if config.kv_budget is not None:
        keep = min(keep, config.kv_budget)
    return config if keep < num_tokens else None
