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

from asl_vllm.config import AUTO_BUDGET, BUDGET_LAYERS, FLAGS, PrunerConfig, PrunerConfigError
from asl_vllm.policies.registry import has_capability

# vllm_xargs key -> PrunerConfig field.
REQUEST_KEYS = {
    "kv_pruner": "pruner",
    "kv_budget": "kv_budget",
    "asl_tau": "tau",
    "asl_select_k": "select_k",
    "asl_two_pass": "two_pass",
    "kv_budget_heads": "budget_heads",
    "kv_budget_layers": "budget_layers",
}
_FIELD_TO_KEY = {field: key for key, field in REQUEST_KEYS.items()}
_FLAG_TO_KEY = {FLAGS[field]: key for field, key in _FIELD_TO_KEY.items()}
# The settings of --kv-budget auto, as a config without it has them.
AUTO_DEFAULTS = {
    name: getattr(PrunerConfig(), name) for name in ("kv_budget_min", "kv_budget_auto_low", "kv_budget_auto_high")
}


def request_config(server: PrunerConfig, extra_args: dict[str, Any] | None) -> PrunerConfig:
    """The effective config of one request; raises PrunerConfigError naming the request field."""
    changes = {REQUEST_KEYS[key]: value for key, value in (extra_args or {}).items() if key in REQUEST_KEYS}
    if not changes:
        return server
    if "two_pass" in changes:
        changes["two_pass"] = _request_bool("asl_two_pass", changes["two_pass"])
    if "budget_layers" in changes and changes["budget_layers"] is None:
        raise PrunerConfigError("kv_budget_layers", f"must be one of {', '.join(BUDGET_LAYERS)}, got None")
    if not server.enabled:
        key = _FIELD_TO_KEY[next(iter(changes))]
        raise PrunerConfigError(key, "needs a server started with --kv-pruner")
    pruner = changes.get("pruner", server.pruner)
    if has_capability(pruner, "prunes") is False:
        return dataclasses.replace(server, pruner=pruner)
    if "kv_budget" in changes and changes["kv_budget"] is None and server.kv_budget is not None:
        raise PrunerConfigError("kv_budget", f"may not lift the server's --kv-budget ({server.kv_budget})")
    merged = {**server.to_dict(), **changes}
    if pruner != server.pruner or not has_capability(pruner, "reference_fixed_layer"):
        merged["fixed_layer"] = None
    if not has_capability(pruner, "two_pass_option") and "two_pass" not in changes:
        merged["two_pass"] = False
    if merged["kv_budget"] != AUTO_BUDGET:
        # A request fixing its own budget on a --kv-budget auto server leaves the auto settings behind.
        merged.update({name: AUTO_DEFAULTS[name] for name in AUTO_DEFAULTS})
    try:
        config = PrunerConfig(**merged).validate()
    except PrunerConfigError as error:
        # A rule between two settings (e.g. window <= select-k) is blamed on a field the request set.
        key = _FLAG_TO_KEY.get(error.flag)
        if key is None or REQUEST_KEYS[key] not in changes:
            key = _FIELD_TO_KEY[next(iter(changes))]
        raise PrunerConfigError(key, str(error).split(": ", 1)[-1]) from None
    if isinstance(server.kv_budget, int):
        if config.budget_auto:
            raise PrunerConfigError("kv_budget", f"may not lift the server's --kv-budget ({server.kv_budget})")
        if config.kv_budget > server.kv_budget:
            raise PrunerConfigError("kv_budget", f"must be <= the server's --kv-budget ({server.kv_budget})")
    return config


def _request_bool(key: str, value: Any) -> bool:
    """true/false; the OpenAI server's `vllm_xargs` schema delivers JSON true/false as 1/0."""
    if isinstance(value, (bool, int)) and value in (0, 1):
        return bool(value)
    raise PrunerConfigError(key, f"must be true or false, got {value!r}")


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

    Called by the worker when a prefill starts. Invalid per-request settings are rejected by the
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
    if config.budget_auto:
        # Scored even when its chosen budget keeps every token (the scores let the scheduler shrink it
        # later), unless no budget could ever cut it: a prompt within the floor runs on vLLM's own path.
        return config if num_tokens > config.budget_min else None
    keep = config.select_k if config.method.selects else num_tokens
    if config.kv_budget is not None:
        keep = min(keep, config.kv_budget)
    return config if keep < num_tokens else None
