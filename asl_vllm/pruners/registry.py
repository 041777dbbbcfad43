"""Every pruner, by name: the one list the CLI, configs, requests, engine and benchmarks read."""

from __future__ import annotations

from typing import TYPE_CHECKING

from asl_vllm.pruners.asl import ASL
from asl_vllm.pruners.base import Pruner
from asl_vllm.pruners.fastkv import FastKV
from asl_vllm.pruners.gemfilter import GemFilter
from asl_vllm.pruners.none import NoPruner
from asl_vllm.pruners.pyramidkv import PyramidKV
from asl_vllm.pruners.snapkv import SnapKV

if TYPE_CHECKING:
    from asl_vllm.settings import PrunerSettings

# In the order --kv-pruner lists them.
REGISTRY: dict[str, type[Pruner]] = {cls.name: cls for cls in (NoPruner, ASL, FastKV, GemFilter, SnapKV, PyramidKV)}
PRUNERS: tuple[str, ...] = tuple(REGISTRY)


def pruner_class(name: str) -> type[Pruner]:
    """The pruner class called `name`; KeyError for an unknown one (config validation names the choices)."""
    return REGISTRY[name]


def with_capability(capability: str) -> tuple[str, ...]:
    """Names of the pruners whose class attribute `capability` is set, e.g. `reference_fixed_layer`."""
    return tuple(name for name, cls in REGISTRY.items() if getattr(cls, capability))


def has_capability(name: str, capability: str) -> bool | None:
    """Whether pruner `name` declares `capability`; None for an unknown name (validation refuses it later)."""
    cls = REGISTRY.get(name) if isinstance(name, str) else None
    return None if cls is None else bool(getattr(cls, capability))


def make_pruner(config: PrunerSettings) -> Pruner:
    """The selection rule of one pruning prefill under a resolved config."""
    cls = pruner_class(config.pruner)
    if not cls.prunes:
        raise ValueError(f"no pruner class for pruner {config.pruner!r}")
    return cls(config)
