"""The pruner configuration: the settings checked against their pruner and resolved against the model.

The settings themselves, each declared once, are `asl_vllm.settings`'s, which
imports no pruner; the checks here need the registry (which pruners a setting
applies to, what a pruner's budget allows) and the model's depth. A config
travels as `VllmConfig.additional_config["kv_pruner"]`, and is resolved once
the model config is known. Layer indices are 0-based throughout.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from asl_vllm.pruners.base import Pruner
from asl_vllm.pruners.registry import PRUNERS, pruner_class, with_capability
from asl_vllm.settings import (
    AUTO_BUDGET,
    MAX_DEFAULT_LAYER_GROUPS,
    REFERENCE_MIN_LAYER,
    REFERENCE_NUM_LAYERS,
    PrunerConfigError,
    PrunerSettings,
    flag,
    settings_of,
)

ADDITIONAL_CONFIG_KEY = "kv_pruner"

# Decoder architectures whose layer loop the engine knows how to run on a subset.
SUPPORTED_ARCHITECTURES = (
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
)


class PrunerConfig(PrunerSettings):
    """The settings of `PrunerSettings`, checked against the pruner they configure."""

    @property
    def pruner_class(self) -> type[Pruner]:
        """The registry's class for `pruner` (validate first)."""
        return pruner_class(self.pruner)

    @property
    def enabled(self) -> bool:
        return self.pruner_class.prunes

    def validate(self) -> PrunerConfig:
        """Checks that need no model; raises PrunerConfigError naming the flag."""
        if self.pruner not in PRUNERS:
            raise PrunerConfigError(
                flag("pruner"), f"unknown pruner {self.pruner!r}; choose one of {', '.join(PRUNERS)}"
            )
        super().validate()
        settings = settings_of(type(self))
        for name, declared in settings.items():
            applies = declared.capability is None or getattr(self.pruner_class, declared.capability)
            if not applies and getattr(self, name) != declared.default:
                raise PrunerConfigError(
                    declared.flag, f"applies only to --kv-pruner {' or '.join(with_capability(declared.capability))}"
                )
        if self.pruner_class.needs_budget and self.kv_budget is None:
            raise PrunerConfigError(flag("kv_budget"), f"--kv-pruner {self.pruner} needs a budget")
        if self.budget_auto and not self.pruner_class.uniform_budget:
            raise PrunerConfigError(
                flag("kv_budget"), f"auto needs a pruner whose budget every layer keeps alike, not {self.pruner}"
            )
        field, budget = ("kv_budget_min", self.budget_min) if self.budget_auto else ("kv_budget", self.kv_budget)
        if self.pruner_class.selects and budget is not None and budget > self.select_k:
            raise PrunerConfigError(
                flag(field),
                f"budget ({budget}) must not exceed --asl-select-k ({self.select_k}): "
                "layers after the selection layer hold only the selected tokens",
            )
        if self.budget_layers == "shared" and not self.pruner_class.uniform_budget:
            raise PrunerConfigError(
                flag("budget_layers"), f"shared needs a pruner whose budget every layer keeps alike, not {self.pruner}"
            )
        if not self.enabled:
            for name, declared in settings.items():
                if not declared.names_pruner and getattr(self, name) != declared.default:
                    raise PrunerConfigError(declared.flag, "has no effect without --kv-pruner")
        return self

    @property
    def layer_shared_budget(self) -> bool:
        """Whether a budget keeps one token set in every layer (`--kv-budget-layers`, resolved)."""
        if self.budget_layers is None:
            return self.pruner_class.uniform_budget
        return self.budget_layers == "shared"

    def resolve(self, num_layers: int, architectures: list[str] | None = None) -> PrunerConfig:
        """Fill model-dependent defaults and check layer indices against the depth."""
        self.validate()
        if not self.enabled:
            return self
        if architectures is not None and not set(architectures) & set(SUPPORTED_ARCHITECTURES):
            raise PrunerConfigError(
                flag("pruner"),
                f"model architecture {architectures} is not supported; supported: {', '.join(SUPPORTED_ARCHITECTURES)}",
            )
        last = num_layers - 1
        if self.pruner_class.adaptive and self.min_layer is None and self.obs_layers > last - 1:
            raise PrunerConfigError(
                flag("obs_layers"),
                f"{self.obs_layers} leaves no selection layer in a {num_layers}-layer model (valid: 2..{last - 1})",
            )
        min_layer = self.min_layer
        if min_layer is None:
            min_layer = max(self.obs_layers - 1, _scaled(REFERENCE_MIN_LAYER, num_layers))
        if self.pruner_class.adaptive and not (self.obs_layers - 1 <= min_layer < last - 1):
            raise PrunerConfigError(
                flag("min_layer"),
                f"{min_layer} is out of range for a {num_layers}-layer model with --asl-obs-layers "
                f"{self.obs_layers} (valid: {self.obs_layers - 1}..{last - 2})",
            )
        fixed_layer = self.fixed_layer
        reference_fixed_layer = self.pruner_class.reference_fixed_layer
        if reference_fixed_layer is not None and fixed_layer is None:
            fixed_layer = _scaled(reference_fixed_layer, num_layers)
        if fixed_layer is not None and not (0 <= fixed_layer < last):
            raise PrunerConfigError(
                flag("fixed_layer"),
                f"{fixed_layer} is out of range for a {num_layers}-layer model (valid: 0..{last - 1})",
            )
        layer_groups = self.layer_groups
        if layer_groups is None:
            layer_groups = default_layer_groups(num_layers, self.one_group_default)
        if num_layers % layer_groups:
            divisors = ", ".join(str(d) for d in range(1, num_layers + 1) if num_layers % d == 0)
            raise PrunerConfigError(
                flag("layer_groups"),
                f"{layer_groups} does not divide the model's {num_layers} layers (valid: {divisors})",
            )
        return dataclasses.replace(self, min_layer=min_layer, fixed_layer=fixed_layer, layer_groups=layer_groups)

    @property
    def one_group_default(self) -> bool:
        """Whether the default is one KV cache group: a budget every layer keeps alike frees as much with one."""
        return self.kv_budget not in (None, AUTO_BUDGET) and self.pruner_class.uniform_budget


def default_layer_groups(num_layers: int, one_group: bool) -> int:
    """KV cache groups (buckets of consecutive layers) when --kv-layer-groups is not given.

    `one_group`: with a uniform budget every pruned layer keeps the same tail, so one group frees as
    much as many. Otherwise groups let the layers after the selection layer free their blocks, or
    hold per-group budgets; the largest divisor of the depth up to MAX_DEFAULT_LAYER_GROUPS bounds the per-step cost
    (one attention metadata and block table per group) while wasting at most a few layers.
    """
    if one_group:
        return 1
    return max(d for d in range(1, min(num_layers, MAX_DEFAULT_LAYER_GROUPS) + 1) if num_layers % d == 0)


def _scaled(reference_layer: int, num_layers: int) -> int:
    return round(reference_layer * num_layers / REFERENCE_NUM_LAYERS)


def from_vllm_config(vllm_config: Any) -> PrunerConfig:
    """The resolved config a running engine uses (`none` when the plugin is idle)."""
    additional = getattr(vllm_config, "additional_config", None) or {}
    return PrunerConfig.from_dict(additional.get(ADDITIONAL_CONFIG_KEY))
