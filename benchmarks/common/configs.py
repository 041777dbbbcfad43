"""Benchmarked configurations: which engine runs each one and which per-request settings it sends.

A configuration is written as a spec, e.g. `asl,B=1024,heads=shared,layers=shared,k=2048,tau=0.3`
(`B`: --kv-budget, `heads`: --kv-budget-heads, `layers`: --kv-budget-layers, `k`: --asl-select-k,
`tau`: --asl-tau; unset keys keep the engine's default), and the spec is its name in every table.
Configurations that differ only in per-request settings (`vllm_xargs`: kv_pruner,
kv_budget, kv_budget_heads, kv_budget_layers, asl_tau, asl_select_k) share one engine started with
`--kv-pruner asl` and no budget, so a request may set any budget; gemfilter and
asl two-pass get an engine of their own. `engine-budget` starts the engine with the
budget instead (`--kv-budget`, which makes one KV cache group the default), as a server
that fixes its budget runs it. In the serving and engine benchmarks `none` is
unmodified vLLM in its default mode (`none,eager`: with `--enforce-eager`, an extra row), run under the
benchmark's scheduler settings like every engine (common/scheduler.py); `none,vllm-default` is
vLLM with its own scheduler defaults, an extra row.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from asl_vllm.pruners import Pruner
from asl_vllm.pruners.registry import REGISTRY

# `<pruner>-2pass`: a pruner with --asl-two-pass, run with it.
TWO_PASS_SUFFIX = "-2pass"
PRUNERS = (*REGISTRY, *(name + TWO_PASS_SUFFIX for name, cls in REGISTRY.items() if cls.two_pass_option))
# Single-pass pruners run per request (vllm_xargs kv_pruner) on one engine; a two-pass one needs its own.
SHARED_PRUNERS = tuple(name for name, cls in REGISTRY.items() if not cls.two_pass)
ADAPTIVE_PRUNERS = tuple(name for name in PRUNERS if REGISTRY[name.removesuffix(TWO_PASS_SUFFIX)].adaptive)
# The shared engine's own pruner: any that prunes, since every request names its own.
SHARED_ENGINE_PRUNER = "asl"
HEAD_MODES = ("per-kv-head", "shared")
LAYER_MODES = ("per-layer", "shared")
# `--budget-heads default`: send no kv_budget_heads (the engine's own rule).
DEFAULT_HEADS = "default"
_KEYS = {"B": "budget", "heads": "heads", "layers": "layers", "k": "select_k", "tau": "tau"}
# Spec words without a value: `eager` (vLLM with --enforce-eager), `engine-budget` (B= as the engine's --kv-budget),
# `vllm-default` (vLLM without the benchmark's scheduler settings).
_WORDS = {"eager": "eager", "engine-budget": "engine_budget", "vllm-default": "vllm_default"}


@dataclass(frozen=True)
class Config:
    """One benchmarked configuration; `None` keeps the engine's default."""

    pruner: str
    budget: int | None = None
    heads: str | None = None
    select_k: int | None = None
    tau: float | None = None
    eager: bool = False
    layers: str | None = None
    engine_budget: bool = False
    vllm_default: bool = False

    def __post_init__(self) -> None:
        if self.pruner not in PRUNERS:
            raise ValueError(f"unknown pruner {self.pruner!r} (known: {', '.join(PRUNERS)})")
        if self.heads is not None and self.heads not in HEAD_MODES:
            raise ValueError(f"heads must be one of {', '.join(HEAD_MODES)}, got {self.heads!r}")
        if self.heads is not None and self.budget is None:
            raise ValueError("heads applies only with a budget (B=...)")
        if self.layers is not None and self.layers not in LAYER_MODES:
            raise ValueError(f"layers must be one of {', '.join(LAYER_MODES)}, got {self.layers!r}")
        if self.layers is not None and self.budget is None:
            raise ValueError("layers applies only with a budget (B=...)")
        if self.engine_budget and self.budget is None:
            raise ValueError("engine-budget applies only with a budget (B=...)")
        if self.pruner_class.needs_budget and self.budget is None:
            raise ValueError(f"{self.pruner} needs a budget (B=...)")
        if not self.pruner_class.prunes and (self.budget, self.select_k, self.tau) != (None, None, None):
            raise ValueError(f"{self.pruner} takes no pruner settings")
        if self.tau is not None and self.pruner not in ADAPTIVE_PRUNERS:
            raise ValueError(f"tau applies only to {' and '.join(ADAPTIVE_PRUNERS)}")
        if self.eager and self.pruner_class.prunes:
            raise ValueError("eager is an extra baseline row: only none,eager")
        if self.vllm_default and (self.pruner_class.prunes or self.eager):
            raise ValueError("vllm-default is an extra baseline row: only none,vllm-default")

    @property
    def pruner_class(self) -> type[Pruner]:
        """The registry's class of this config's pruner (its two-pass variant included)."""
        return REGISTRY[self.pruner.removesuffix(TWO_PASS_SUFFIX)]

    @property
    def two_pass(self) -> bool:
        return self.pruner.endswith(TWO_PASS_SUFFIX) or self.pruner_class.two_pass

    @property
    def name(self) -> str:
        parts = [self.pruner]
        for key, field in _KEYS.items():
            value = getattr(self, field)
            if value is not None:
                parts.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
        words = [word for word, field in _WORDS.items() if getattr(self, field)]
        return ",".join(parts + words)


def file_stem(name: str) -> str:
    """A config name as part of a file name (`asl,B=1024` -> `asl_B1024`)."""
    return name.replace(",", "_").replace("=", "")


def parse(spec: str) -> Config:
    """A Config from its spec (`asl,B=1024,k=2048`); raises ValueError naming the bad part."""
    pruner, *parts = spec.split(",")
    settings: dict[str, Any] = {}
    for part in parts:
        if part in _WORDS:
            settings[_WORDS[part]] = True
            continue
        key, _, value = part.partition("=")
        if key not in _KEYS or not value:
            choices = ", ".join([*(k + "=..." for k in _KEYS), *_WORDS])
            raise ValueError(f"{spec!r}: {part!r} is not one of {choices}")
        field = _KEYS[key]
        settings[field] = value if field in ("heads", "layers") else float(value) if field == "tau" else int(value)
    return Config(pruner, **settings)


def with_heads(configs: list[Config], modes: list[str]) -> list[Config]:
    """Each budgeted config without a head mode, once per mode (`default`: none sent)."""
    expanded: list[Config] = []
    for config in configs:
        if config.budget is None or config.heads is not None:
            expanded.append(config)
            continue
        for mode in modes:
            heads = None if mode == DEFAULT_HEADS else mode
            expanded.append(dataclasses.replace(config, heads=heads))
    return list(dict.fromkeys(expanded))


def engine_settings(
    config: Config, baseline_alone: bool = False, scheduler: dict[str, Any] | None = None
) -> dict[str, Any]:
    """`vllm.LLM` keyword arguments (or `vllm serve` flags) of the engine that runs `config`.

    `baseline_alone`: `none` runs on unmodified vLLM (serving, engine) instead of on the shared engine.
    `scheduler`: settings every engine gets (common/scheduler.py) except `none,vllm-default`'s.
    """
    shared = {} if config.vllm_default or scheduler is None else scheduler
    if not config.pruner_class.prunes and (baseline_alone or config.eager or config.vllm_default):
        return {"enforce_eager": True, **shared} if config.eager else dict(shared)
    if config.pruner_class.two_pass:
        engine: dict[str, Any] = {"kv_pruner": config.pruner_class.name}
    elif config.two_pass:
        engine = {"kv_pruner": config.pruner_class.name, "asl_two_pass": True}
    else:
        engine = {"kv_pruner": SHARED_ENGINE_PRUNER}
    budget = {"kv_budget": config.budget} if config.engine_budget else {}
    return {**engine, **budget, **shared}


def request_args(config: Config, engine: dict[str, Any]) -> dict[str, Any]:
    """The request's `vllm_xargs` on `engine` (none on an engine without a pruner)."""
    if "kv_pruner" not in engine:
        return {}
    xargs: dict[str, Any] = {"kv_pruner": config.pruner} if config.pruner in SHARED_PRUNERS else {}
    for key, value in (
        ("kv_budget", config.budget),
        ("kv_budget_heads", config.heads),
        ("kv_budget_layers", config.layers),
        ("asl_select_k", config.select_k),
        ("asl_tau", config.tau),
    ):
        if value is not None:
            xargs[key] = value
    return xargs


def group_by_engine(
    configs: list[Config], baseline_alone: bool = False, scheduler: dict[str, Any] | None = None
) -> list[tuple[dict[str, Any], list[Config]]]:
    """(engine settings, the configs it runs), in first-seen order."""
    groups: dict[tuple, tuple[dict[str, Any], list[Config]]] = {}
    for config in configs:
        engine = engine_settings(config, baseline_alone, scheduler)
        groups.setdefault(tuple(sorted(engine.items())), (engine, []))[1].append(config)
    return list(groups.values())


def server_flags(engine: dict[str, Any]) -> list[str]:
    """`vllm serve` flags for engine settings (`kv_pruner="asl"` -> `--kv-pruner asl`; `False` -> `--no-...`,
    so that a setting switched off is passed, not left to a default)."""
    flags: list[str] = []
    for key, value in engine.items():
        name = key.replace("_", "-")
        if value is True:
            flags.append(f"--{name}")
        elif value is False:
            flags.append(f"--no-{name}")
        else:
            flags += [f"--{name}", str(value)]
    return flags


def add_config_arguments(parser: Any, small: list[str], full: list[str], heads: list[str] | None = None) -> None:
    """The flags every benchmark takes to choose its configurations (`heads`: default head modes)."""
    parser.add_argument(
        "--configs",
        nargs="+",
        default=None,
        metavar="SPEC",
        help=f"configurations (default: the small or --full preset). Small: {' '.join(small)}. Full: {' '.join(full)}",
    )
    parser.add_argument(
        "--budget-heads",
        nargs="+",
        default=heads or list(HEAD_MODES),
        choices=[*HEAD_MODES, DEFAULT_HEADS],
        help="head modes each budgeted configuration runs in (vllm_xargs kv_budget_heads; "
        f"'{DEFAULT_HEADS}': send none, for an engine without --kv-budget-heads)",
    )


def configs_from_arguments(args: Any, small: list[str], full: list[str]) -> list[Config]:
    specs = args.configs or (full if args.full else small)
    return with_heads([parse(spec) for spec in specs], args.budget_heads)
