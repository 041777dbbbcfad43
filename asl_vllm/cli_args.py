"""The `--kv-pruner` family of flags, shared by `vllm serve` and `EngineArgs`: one per declared setting.

Flag, type, metavar, choices, default and help all come from the setting's
declaration (`asl_vllm.settings`); a malformed or out-of-range value stops
argparse with the same message the config gives. `--kv-pruner`'s choices and
their summaries are the registry's.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from asl_vllm.config import PrunerConfig
from asl_vllm.pruners.registry import REGISTRY
from asl_vllm.settings import Setting, settings_of


def add_pruner_args(
    parser: argparse.ArgumentParser, config_class: type[PrunerConfig] = PrunerConfig
) -> argparse.ArgumentParser:
    """Add the flags of `config_class`'s settings to a vLLM parser (idempotent: `--kv-pruner`'s default
    says they are there)."""
    if parser.get_default("kv_pruner") is not None:
        return parser
    group = parser.add_argument_group(
        title="KVPruning",
        description="Layer-wise KV-cache token pruning (asl-vllm). Layer indices are 0-based.",
    )
    for declared in settings_of(config_class).values():
        group.add_argument(declared.flag, **_argument(declared))
    return parser


def _argument(declared: Setting) -> dict[str, Any]:
    """`add_argument`'s keywords for one setting."""
    text = declared.help
    if declared.kind is float:
        text += f" In {declared.interval}."
    if declared.derived_default is not None:
        text += f" Default: {declared.derived_default.replace('`', '')}."
    argument: dict[str, Any] = {"default": declared.default, "help": text}
    if declared.kind is bool:
        return {**argument, "action": "store_true"}
    if declared.names_pruner:
        summaries = " ".join(f"{name}: {cls.summary}" for name, cls in REGISTRY.items())
        return {**argument, "choices": tuple(REGISTRY), "help": f"{text} {summaries}"}
    if declared.kind is str:
        return {**argument, "choices": declared.words}
    return {**argument, "type": _parser(declared), "metavar": declared.metavar}


def _parser(declared: Setting) -> Callable[[str], object]:
    """argparse `type` of a numeric setting: the text as a value, checked as the config checks it."""

    def parse(text: str) -> object:
        if text in declared.words:
            return text
        try:
            value = declared.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {declared.expected}, got {text!r}") from None
        if problem := declared.problem(value):
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


def pruner_config_from_namespace(args: argparse.Namespace) -> PrunerConfig:
    """The settings whose flags the namespace holds; the rest keep their defaults."""
    raw: dict[str, Any] = {}
    for name, declared in settings_of(PrunerConfig).items():
        value = getattr(args, declared.dest, None)
        if value is not None:
            raw[name] = value
    return PrunerConfig.from_dict(raw)
