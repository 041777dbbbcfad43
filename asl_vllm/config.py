"""The pruner configuration: one validated object that reaches every vLLM process.

It travels as `VllmConfig.additional_config["kv_pruner"]` (a plain dict, part of
vLLM's config hash), is built from CLI flags, `LLM(...)` keyword arguments or a
dict, and is resolved against the model depth once the model config is known.
Layer indices are 0-based throughout.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from asl_vllm.policies.base import Pruner
from asl_vllm.policies.registry import PRUNERS, pruner_class, with_capability

BudgetHeads = Literal["shared", "per-kv-head"]
# --kv-budget-heads: one kept token set per layer for all KV heads, or one per KV head (SnapKV).
BUDGET_HEADS: tuple[str, ...] = ("shared", "per-kv-head")
BudgetLayers = Literal["shared", "per-layer"]
# --kv-budget-layers: one kept token set for every layer, ranked by all layers' scores, or each layer its own.
BUDGET_LAYERS: tuple[str, ...] = ("shared", "per-layer")
# --kv-budget auto: each request's budget is chosen from the block pool's usage when it is scheduled.
AUTO_BUDGET = "auto"
# --kv-budget-min when not given: the floor of auto budgets and of compression.
DEFAULT_BUDGET_MIN = 1024
ADDITIONAL_CONFIG_KEY = "kv_pruner"

# Reference depths of the paper (32-layer Llama-3.1-8B); scaled to other depths.
REFERENCE_NUM_LAYERS = 32
REFERENCE_MIN_LAYER = 10
# Default cap on the KV cache groups (layer buckets) a pruner without --kv-budget uses.
MAX_DEFAULT_LAYER_GROUPS = 10

# Largest integer setting: token counts and layer indices reach torch and the Triton kernels,
# which index with int32 (a larger value overflowed there and stopped the engine).
MAX_INT_SETTING = 2**31 - 1
# Widest pooling window: the kernels unroll it, and a window wider than a prompt only flattens scores.
MAX_POOL_KERNEL = 1023

# Decoder architectures whose layer loop the engine knows how to run on a subset.
SUPPORTED_ARCHITECTURES = (
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
)


class PrunerConfigError(ValueError):
    """A bad pruner setting; the message names the flag."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")
        self.flag = flag


@dataclass(frozen=True)
class PrunerConfig:
    """Every knob of every pruner. Field name -> CLI flag is in `FLAGS`."""

    pruner: str = "none"
    # Tokens per layer, AUTO_BUDGET (chosen per request from pool usage, `asl_vllm.pressure`) or None.
    kv_budget: int | Literal["auto"] | None = None
    kv_budget_min: int | None = None
    kv_budget_auto_low: float = 0.5
    kv_budget_auto_high: float = 0.9
    select_k: int = 2048
    tau: float = 0.3
    min_layer: int | None = None
    obs_layers: int = 8
    window: int = 32
    pool_kernel: int = 7
    fixed_layer: int | None = None
    two_pass: bool = False
    layer_groups: int | None = None
    budget_heads: BudgetHeads = "shared"
    # None: shared for a pruner whose budget every layer keeps alike, per-layer otherwise (pyramidkv).
    budget_layers: BudgetLayers | None = None

    @property
    def method(self) -> type[Pruner]:
        """The registry's class for `pruner` (validate first)."""
        return pruner_class(self.pruner)

    @property
    def enabled(self) -> bool:
        return self.method.prunes

    def validate(self) -> PrunerConfig:
        """Checks that need no model; raises PrunerConfigError naming the flag."""
        if self.pruner not in PRUNERS:
            raise PrunerConfigError(
                flag("pruner"), f"unknown pruner {self.pruner!r}; choose one of {', '.join(PRUNERS)}"
            )
        _check_int(self.window, "window", minimum=1)
        _check_int(self.select_k, "select_k", minimum=1)
        _check_int(self.obs_layers, "obs_layers", minimum=2)
        _check_int(self.pool_kernel, "pool_kernel", minimum=1, maximum=MAX_POOL_KERNEL)
        if self.pool_kernel % 2 == 0:
            raise PrunerConfigError(flag("pool_kernel"), f"must be odd, got {self.pool_kernel}")
        if isinstance(self.tau, bool) or not isinstance(self.tau, (int, float)):
            raise PrunerConfigError(flag("tau"), f"must be a number, got {self.tau!r}")
        if not (math.isfinite(self.tau) and 0 < self.tau <= 1):
            raise PrunerConfigError(flag("tau"), f"must be in (0, 1], got {self.tau}")
        if self.window > self.select_k:
            raise PrunerConfigError(
                flag("window"), f"window ({self.window}) must not exceed --asl-select-k ({self.select_k})"
            )
        if self.kv_budget == AUTO_BUDGET:
            self._validate_auto()
        elif self.kv_budget is not None:
            self._check_budget(self.kv_budget, "kv_budget")
        for name in ("kv_budget_min", "kv_budget_auto_low", "kv_budget_auto_high"):
            if self.kv_budget != AUTO_BUDGET and getattr(self, name) != _DEFAULTS[name]:
                raise PrunerConfigError(flag(name), "applies only with --kv-budget auto")
        if self.min_layer is not None:
            _check_int(self.min_layer, "min_layer", minimum=self.obs_layers - 1)
        if self.layer_groups is not None:
            _check_int(self.layer_groups, "layer_groups", minimum=1)
        if self.fixed_layer is not None:
            _check_int(self.fixed_layer, "fixed_layer", minimum=0)
            if self.method.reference_fixed_layer is None:
                raise PrunerConfigError(flag("fixed_layer"), _applies_only_to("reference_fixed_layer"))
        if self.method.needs_budget and self.kv_budget is None:
            raise PrunerConfigError(flag("kv_budget"), f"--kv-pruner {self.pruner} needs a budget")
        _check_choice(self.budget_heads, "budget_heads", BUDGET_HEADS)
        if self.budget_layers is not None:
            _check_choice(self.budget_layers, "budget_layers", BUDGET_LAYERS)
        if self.budget_layers == "shared" and not self.method.uniform_budget:
            raise PrunerConfigError(
                flag("budget_layers"), f"shared needs a pruner whose budget every layer keeps alike, not {self.pruner}"
            )
        if not isinstance(self.two_pass, bool):
            raise PrunerConfigError(flag("two_pass"), f"must be true or false, got {self.two_pass!r}")
        if self.two_pass and not self.method.two_pass_option:
            raise PrunerConfigError(flag("two_pass"), _applies_only_to("two_pass_option"))
        if not self.enabled:
            changed = [
                f.name for f in dataclasses.fields(self) if f.name != "pruner" and getattr(self, f.name) != f.default
            ]
            if changed:
                raise PrunerConfigError(flag(changed[0]), "has no effect without --kv-pruner")
        return self

    def _check_budget(self, budget: object, field: str) -> None:
        _check_int(budget, field, minimum=1)
        if budget < self.window:
            raise PrunerConfigError(flag(field), f"budget ({budget}) must be at least --asl-window ({self.window})")
        if self.method.selects and budget > self.select_k:
            raise PrunerConfigError(
                flag(field),
                f"budget ({budget}) must not exceed --asl-select-k ({self.select_k}): "
                "layers after the selection layer hold only the selected tokens",
            )

    def _validate_auto(self) -> None:
        if not self.method.uniform_budget:
            raise PrunerConfigError(
                flag("kv_budget"), f"auto needs a pruner whose budget every layer keeps alike, not {self.pruner}"
            )
        self._check_budget(self.budget_min, "kv_budget_min")
        low, high = self.kv_budget_auto_low, self.kv_budget_auto_high
        for name, value in (("kv_budget_auto_low", low), ("kv_budget_auto_high", high)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise PrunerConfigError(flag(name), f"must be a pool usage in [0, 1], got {value!r}")
        if low >= high:
            raise PrunerConfigError(flag("kv_budget_auto_low"), f"({low}) must be below --kv-budget-auto-high ({high})")

    @property
    def layer_shared_budget(self) -> bool:
        """Whether a budget keeps one token set in every layer (`--kv-budget-layers`, resolved)."""
        if self.budget_layers is None:
            return self.method.uniform_budget
        return self.budget_layers == "shared"

    @property
    def budget_auto(self) -> bool:
        return self.kv_budget == AUTO_BUDGET

    @property
    def budget_min(self) -> int:
        """The floor of auto budgets and of compression."""
        return min(DEFAULT_BUDGET_MIN, self.select_k) if self.kv_budget_min is None else self.kv_budget_min

    def with_budget(self, budget: int | None) -> PrunerConfig:
        """This config with a concrete budget (an auto budget once chosen)."""
        return dataclasses.replace(self, kv_budget=budget)

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
        if self.method.adaptive and self.min_layer is None and self.obs_layers > last - 1:
            raise PrunerConfigError(
                flag("obs_layers"),
                f"{self.obs_layers} leaves no selection layer in a {num_layers}-layer model (valid: 2..{last - 1})",
            )
        min_layer = self.min_layer
        if min_layer is None:
            min_layer = max(self.obs_layers - 1, _scaled(REFERENCE_MIN_LAYER, num_layers))
        if self.method.adaptive and not (self.obs_layers - 1 <= min_layer < last - 1):
            raise PrunerConfigError(
                flag("min_layer"),
                f"{min_layer} is out of range for a {num_layers}-layer model with --asl-obs-layers "
                f"{self.obs_layers} (valid: {self.obs_layers - 1}..{last - 2})",
            )
        fixed_layer = self.fixed_layer
        reference_fixed_layer = self.method.reference_fixed_layer
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
        return self.kv_budget not in (None, AUTO_BUDGET) and self.method.uniform_budget

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> PrunerConfig:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise PrunerConfigError(flag("pruner"), f"expected a mapping, got {type(raw).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise PrunerConfigError(unknown[0], f"unknown pruner setting; known: {', '.join(sorted(names))}")
        return cls(**raw).validate()


# Field -> CLI flag. The CLI is the name users see in errors.
FLAGS: dict[str, str] = {
    "pruner": "--kv-pruner",
    "kv_budget": "--kv-budget",
    "kv_budget_min": "--kv-budget-min",
    "kv_budget_auto_low": "--kv-budget-auto-low",
    "kv_budget_auto_high": "--kv-budget-auto-high",
    "select_k": "--asl-select-k",
    "tau": "--asl-tau",
    "min_layer": "--asl-min-layer",
    "obs_layers": "--asl-obs-layers",
    "window": "--asl-window",
    "pool_kernel": "--asl-kernel",
    "fixed_layer": "--fixed-layer",
    "two_pass": "--asl-two-pass",
    "layer_groups": "--kv-layer-groups",
    "budget_heads": "--kv-budget-heads",
    "budget_layers": "--kv-budget-layers",
}


_DEFAULTS = {item.name: item.default for item in dataclasses.fields(PrunerConfig)}


def flag(field: str) -> str:
    return FLAGS.get(field, field)


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


def _applies_only_to(capability: str) -> str:
    return f"applies only to --kv-pruner {' or '.join(with_capability(capability))}"


def _scaled(reference_layer: int, num_layers: int) -> int:
    return round(reference_layer * num_layers / REFERENCE_NUM_LAYERS)


def _check_choice(value: object, field: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise PrunerConfigError(flag(field), f"must be one of {', '.join(choices)}, got {value!r}")


def _check_int(value: object, field: str, minimum: int, maximum: int = MAX_INT_SETTING) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PrunerConfigError(flag(field), f"must be an integer, got {value!r}")
    if value < minimum:
        raise PrunerConfigError(flag(field), f"must be >= {minimum}, got {value}")
    if value > maximum:
        raise PrunerConfigError(flag(field), f"must be <= {maximum}, got {value}")


def from_vllm_config(vllm_config: Any) -> PrunerConfig:
    """The resolved config a running engine uses (`none` when the plugin is idle)."""
    additional = getattr(vllm_config, "additional_config", None) or {}
    return PrunerConfig.from_dict(additional.get(ADDITIONAL_CONFIG_KEY))
