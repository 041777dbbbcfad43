"""The pruner settings, each declared once: its field says flag, help, default, range and request key.

Every surface is derived from these declarations: the `vllm serve` flags and
their help (`asl_vllm.cli_args`), `FLAGS` (the names errors and `LLM(...)`
keywords use), the per-request `vllm_xargs` keys and their checks
(`asl_vllm.request_config`), and the field checks of `validate`. This module
imports neither torch nor the pruners, so anything may import it: the checks
that depend on a pruner (which pruners a setting applies to, budget rules) are
`asl_vllm.config.PrunerConfig`'s, which knows the registry. Layer indices are
0-based throughout.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

BudgetHeads = Literal["shared", "per-kv-head"]
BudgetLayers = Literal["shared", "per-layer"]
# --kv-budget auto: each request's budget is chosen from the block pool's usage when it is scheduled.
AUTO_BUDGET = "auto"
# --kv-budget-min when not given: the floor of auto budgets and of compression.
DEFAULT_BUDGET_MIN = 1024
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

_DECLARATION = "asl_vllm.setting"
_Settings = TypeVar("_Settings", bound="PrunerSettings")


class PrunerConfigError(ValueError):
    """A bad pruner setting; the message names the flag (or the request field)."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")
        self.flag = flag


@dataclass(frozen=True)
class Setting:
    """One setting as users meet it, declared on its `PrunerSettings` field with `setting(...)`.

    The field gives `name`, `default` and the values it takes: its type's members, `int`, `float`, `bool`,
    the names of a `Literal` (alone: the choices; beside a number: words such as `auto`) and `None`.
    """

    flag: str
    help: str
    metavar: str | None = None
    # The `vllm_xargs` key of a setting a request may set.
    request_key: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    # The minimum itself is out of range: (minimum, maximum].
    open_minimum: bool = False
    odd: bool = False
    # What an unset (None) value stands for, as help and README say it: a default derived from the model
    # or the pruner. Only the server derives it, so a request may not ask for None.
    derived_default: str | None = None
    # The value names a pruner of the registry (`asl_vllm.pruners.registry`), which checks it.
    names_pruner: bool = False
    # The `Pruner` class attribute a pruner sets for this setting to apply, e.g. `two_pass_option`.
    capability: str | None = None
    # Applies only with --kv-budget auto.
    auto_budget_only: bool = False
    # Filled in from the field by `settings_of`.
    name: str = ""
    default: Any = None
    kind: type = str
    words: tuple[str, ...] = ()
    optional: bool = False

    @property
    def dest(self) -> str:
        """The argparse destination and `LLM(...)` keyword: the flag in snake case."""
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def interval(self) -> str:
        return f"{'(' if self.open_minimum else '['}{self.minimum}, {self.maximum}]"

    @property
    def expected(self) -> str:
        """The kind of value, as error messages say it."""
        if self.kind is float:
            return "a number"
        return " or ".join(["an integer", *map(repr, self.words)])

    @property
    def shown_default(self) -> str:
        """The default as help and the README's Flags table state it."""
        if self.derived_default is not None:
            return self.derived_default
        if self.kind is bool:
            return "on" if self.default else "off"
        if isinstance(self.default, str):
            return f"`{self.default}`"
        return "none" if self.default is None else str(self.default)

    def problem(self, value: object, none_allowed: bool = True) -> str | None:
        """What is wrong with `value` by this declaration alone; None when nothing is."""
        if value is None and self.optional and none_allowed:
            return None
        if isinstance(value, str) and value in self.words:
            return None
        if self.kind is bool:
            return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
        if self.kind is str:
            if self.names_pruner:
                return None
            return f"must be one of {', '.join(self.words)}, got {value!r}"
        numeric = (int, float) if self.kind is float else int
        if isinstance(value, bool) or not isinstance(value, numeric):
            return f"must be {self.expected}, got {value!r}"
        return self._range_problem(value)

    def _range_problem(self, value: float) -> str | None:
        if self.kind is float:
            above = value > self.minimum if self.open_minimum else value >= self.minimum
            if math.isfinite(value) and above and value <= self.maximum:
                return None
            return f"must be in {self.interval}, got {value}"
        if self.minimum is not None and value < self.minimum:
            return f"must be >= {self.minimum}, got {value}"
        if self.maximum is not None and value > self.maximum:
            return f"must be <= {self.maximum}, got {value}"
        if self.odd and value % 2 == 0:
            return f"must be odd, got {value}"
        return None

    def request_value(self, value: object) -> object:
        """A request's value, checked; JSON true/false arrive as 1/0 through the OpenAI `vllm_xargs` schema."""
        if self.kind is bool and type(value) is int and value in (0, 1):
            value = bool(value)
        if problem := self.problem(value, none_allowed=self.derived_default is None):
            raise PrunerConfigError(self.request_key, problem)
        return value


def setting(default: Any, flag: str, help: str, **declared: Any) -> Any:
    """A `PrunerSettings` field carrying its declaration (the keywords of `Setting`)."""
    return dataclasses.field(default=default, metadata={_DECLARATION: Setting(flag=flag, help=help, **declared)})


@dataclass(frozen=True)
class PrunerSettings:
    """Every knob of every pruner, each field declared once with `setting(...)`.

    It travels as `VllmConfig.additional_config["kv_pruner"]` (a plain dict, part of vLLM's config hash) and
    is built from CLI flags, `LLM(...)` keyword arguments or a dict; `asl_vllm.config.PrunerConfig` adds the
    checks against the pruner and the resolution against the model depth.
    """

    pruner: str = setting("none", "--kv-pruner", "Pruning method.", request_key="kv_pruner", names_pruner=True)
    kv_budget: int | Literal["auto"] | None = setting(
        None,
        "--kv-budget",
        "Tokens kept per layer after prefill (see --kv-budget-heads); blocks beyond it return to the pool. "
        "auto: chosen per request from the block pool's usage when it is scheduled (none while usage is at most "
        "--kv-budget-auto-low, --kv-budget-min from --kv-budget-auto-high on, linear between), and running "
        "requests are shrunk in place, down to --kv-budget-min, before vLLM would preempt one. Default: none "
        "(layers up to the selection layer keep all).",
        metavar="B",
        request_key="kv_budget",
        minimum=1,
    )
    kv_budget_min: int | None = setting(
        None,
        "--kv-budget-min",
        "With --kv-budget auto: the smallest budget a request is given or shrunk to.",
        metavar="B",
        minimum=1,
        derived_default=f"{DEFAULT_BUDGET_MIN} (at most `--asl-select-k`)",
        auto_budget_only=True,
    )
    kv_budget_auto_low: float = setting(
        0.5,
        "--kv-budget-auto-low",
        "With --kv-budget auto: pool usage up to which a new request keeps full KV.",
        metavar="U",
        minimum=0,
        maximum=1,
        auto_budget_only=True,
    )
    kv_budget_auto_high: float = setting(
        0.9,
        "--kv-budget-auto-high",
        "With --kv-budget auto: pool usage from which a new request gets --kv-budget-min.",
        metavar="U",
        minimum=0,
        maximum=1,
        auto_budget_only=True,
    )
    select_k: int = setting(
        2048,
        "--asl-select-k",
        "Tokens kept (window included) after the selection layer.",
        metavar="K",
        request_key="asl_select_k",
        minimum=1,
    )
    tau: float = setting(
        0.3,
        "--asl-tau",
        "Relative rank-variance threshold; the first layer below it is the selection layer.",
        metavar="T",
        request_key="asl_tau",
        minimum=0,
        maximum=1,
        open_minimum=True,
    )
    min_layer: int | None = setting(
        None,
        "--asl-min-layer",
        "Reference layer L_min of the rank variance; selection starts one layer later.",
        metavar="L",
        minimum=0,
        derived_default=f"{REFERENCE_MIN_LAYER} of {REFERENCE_NUM_LAYERS} layers, scaled",
    )
    obs_layers: int = setting(8, "--asl-obs-layers", "Layers whose ranks are compared.", metavar="N", minimum=2)
    window: int = setting(
        32,
        "--asl-window",
        "Observation window: last prompt tokens whose queries score the rest; always kept.",
        metavar="W",
        minimum=1,
    )
    pool_kernel: int = setting(
        7,
        "--asl-kernel",
        "Odd average-pooling width over token scores.",
        metavar="S",
        minimum=1,
        maximum=MAX_POOL_KERNEL,
        odd=True,
    )
    fixed_layer: int | None = setting(
        None,
        "--fixed-layer",
        "Selection layer of fastkv, filter layer of gemfilter.",
        metavar="L",
        minimum=0,
        derived_default=f"15 (fastkv) / 13 (gemfilter) of {REFERENCE_NUM_LAYERS}, scaled",
        capability="reference_fixed_layer",
    )
    two_pass: bool = setting(
        False,
        "--asl-two-pass",
        "asl only: stop at the adaptive selection layer and re-run the whole model on the selected "
        "--asl-select-k tokens with fresh positions (GemFilter style); every layer keeps only those tokens and "
        "the rest of the prompt's KV blocks return to the pool. If no layer passes --asl-tau, nothing is pruned.",
        request_key="asl_two_pass",
        capability="two_pass_option",
    )
    budget_heads: BudgetHeads = setting(
        "shared",
        "--kv-budget-heads",
        "How --kv-budget keeps tokens in a layer. shared: one set of B tokens for all KV heads, ranked by the "
        "layer's window scores summed over every head. per-kv-head: each KV head its own B tokens (SnapKV's rule).",
        request_key="kv_budget_heads",
    )
    budget_layers: BudgetLayers | None = setting(
        None,
        "--kv-budget-layers",
        "Which scores --kv-budget ranks a layer's tokens by. shared: one set of B tokens kept in every layer, "
        "ranked by the sum over all layers of each layer's window scores as shares of that layer's total. "
        "per-layer: each layer by its own scores (SnapKV's rule).",
        request_key="kv_budget_layers",
        derived_default="`shared` (`per-layer` for pyramidkv)",
    )
    layer_groups: int | None = setting(
        None,
        "--kv-layer-groups",
        "KV cache groups (buckets of consecutive layers, each with its own block table); must divide the "
        "model's depth. Layers after the selection layer free their blocks per group.",
        metavar="N",
        minimum=1,
        derived_default=f"largest divisor of the depth up to {MAX_DEFAULT_LAYER_GROUPS} (10 of 30 layers); "
        "1 with `--kv-budget` (except pyramidkv)",
    )

    def validate(self) -> PrunerSettings:
        """The checks that need no pruner; raises PrunerConfigError naming the flag."""
        for name, declared in settings_of(type(self)).items():
            value = getattr(self, name)
            if problem := declared.problem(value):
                raise PrunerConfigError(declared.flag, problem)
            if declared.kind is int and isinstance(value, int) and value > MAX_INT_SETTING:
                raise PrunerConfigError(declared.flag, f"must be <= {MAX_INT_SETTING}, got {value}")
        if self.window > self.select_k:
            raise PrunerConfigError(
                flag("window"), f"window ({self.window}) must not exceed --asl-select-k ({self.select_k})"
            )
        if self.min_layer is not None and self.min_layer < self.obs_layers - 1:
            raise PrunerConfigError(flag("min_layer"), f"must be >= {self.obs_layers - 1}, got {self.min_layer}")
        if self.budget_auto:
            self._check_budget_floor(self.budget_min, "kv_budget_min")
            low, high = self.kv_budget_auto_low, self.kv_budget_auto_high
            if low >= high:
                raise PrunerConfigError(
                    flag("kv_budget_auto_low"), f"({low}) must be below --kv-budget-auto-high ({high})"
                )
            return self
        for name, declared in settings_of(type(self)).items():
            if declared.auto_budget_only and getattr(self, name) != declared.default:
                raise PrunerConfigError(declared.flag, "applies only with --kv-budget auto")
        if self.kv_budget is not None:
            self._check_budget_floor(self.kv_budget, "kv_budget")
        return self

    def _check_budget_floor(self, budget: int, field: str) -> None:
        if budget < self.window:
            raise PrunerConfigError(flag(field), f"budget ({budget}) must be at least --asl-window ({self.window})")

    @property
    def budget_auto(self) -> bool:
        return self.kv_budget == AUTO_BUDGET

    @property
    def budget_min(self) -> int:
        """The floor of auto budgets and of compression."""
        return min(DEFAULT_BUDGET_MIN, self.select_k) if self.kv_budget_min is None else self.kv_budget_min

    def with_budget(self: _Settings, budget: int | None) -> _Settings:
        """These settings with a concrete budget (an auto budget once chosen)."""
        return dataclasses.replace(self, kv_budget=budget)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[_Settings], raw: dict[str, Any] | None) -> _Settings:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise PrunerConfigError(flag("pruner"), f"expected a mapping, got {type(raw).__name__}")
        names = settings_of(cls)
        unknown = sorted(set(raw) - set(names))
        if unknown:
            raise PrunerConfigError(unknown[0], f"unknown pruner setting; known: {', '.join(sorted(names))}")
        return cls(**raw).validate()


@functools.cache
def settings_of(cls: type[PrunerSettings]) -> dict[str, Setting]:
    """Field name -> its declaration, completed from the field, in field order (a subclass's fields last)."""
    hints = typing.get_type_hints(cls)
    return {field.name: _completed(field, hints[field.name]) for field in dataclasses.fields(cls)}


def _completed(field: dataclasses.Field, hint: Any) -> Setting:
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    members = typing.get_args(hint) if union else (hint,)
    words = tuple(
        word for member in members if typing.get_origin(member) is Literal for word in typing.get_args(member)
    )
    kinds = [member for member in members if member is not type(None) and typing.get_origin(member) is not Literal]
    return dataclasses.replace(
        field.metadata[_DECLARATION],
        name=field.name,
        default=field.default,
        kind=kinds[0] if kinds else str,
        words=words,
        optional=type(None) in members,
    )


SETTINGS = settings_of(PrunerSettings)
# Field -> CLI flag. The CLI is the name users see in errors.
FLAGS: dict[str, str] = {name: declared.flag for name, declared in SETTINGS.items()}


def flag(field: str) -> str:
    return FLAGS.get(field, field)
