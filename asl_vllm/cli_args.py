"""The `--kv-pruner` family of flags, shared by `vllm serve` and `EngineArgs`."""

from __future__ import annotations

import argparse
import math
from typing import Any

from asl_vllm.config import AUTO_BUDGET, BUDGET_HEADS, BUDGET_LAYERS, DEFAULT_BUDGET_MIN, FLAGS, PrunerConfig
from asl_vllm.policies.registry import REGISTRY


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _tau(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= 1):
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _budget(text: str) -> int | str:
    if text == AUTO_BUDGET:
        return text
    try:
        return _int_at_least(1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or {AUTO_BUDGET!r}, got {text!r}") from None


def _usage(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a pool usage in [0, 1], got {text}")
    return value


def add_pruner_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the pruner flags to a vLLM parser (idempotent: `--kv-pruner`'s default says they are there)."""
    if parser.get_default("kv_pruner") is not None:
        return parser
    defaults = PrunerConfig()
    group = parser.add_argument_group(
        title="KVPruning",
        description="Layer-wise KV-cache token pruning (asl-vllm). Layer indices are 0-based.",
    )
    group.add_argument(
        "--kv-pruner",
        choices=tuple(REGISTRY),
        default=defaults.pruner,
        help="Pruning method. " + " ".join(f"{name}: {cls.summary}" for name, cls in REGISTRY.items()),
    )
    group.add_argument(
        "--kv-budget",
        type=_budget,
        default=None,
        help="Tokens kept per layer after prefill (see --kv-budget-heads); blocks beyond it return to the pool. "
        "auto: chosen per request from the block pool's usage when it is scheduled (none while usage is at most "
        "--kv-budget-auto-low, --kv-budget-min from --kv-budget-auto-high on, linear between), and running "
        "requests are shrunk in place, down to --kv-budget-min, before vLLM would preempt one. Default: none "
        "(layers up to the selection layer keep all).",
    )
    for option, minimum, default, text in (
        (
            "--kv-budget-min",
            1,
            None,
            f"With --kv-budget auto: the smallest budget a request is given or shrunk to (default "
            f"{DEFAULT_BUDGET_MIN}, at most --asl-select-k).",
        ),
        ("--asl-select-k", 1, defaults.select_k, "Tokens kept (window included) after the selection layer."),
        (
            "--asl-min-layer",
            0,
            None,
            "Reference layer L_min of the rank variance; selection starts one layer later "
            "(default: 10 of 32 layers, scaled to the model's depth).",
        ),
        ("--asl-obs-layers", 2, defaults.obs_layers, "Layers whose ranks are compared."),
        (
            "--asl-window",
            1,
            defaults.window,
            "Observation window: last prompt tokens whose queries score the rest; always kept.",
        ),
        ("--asl-kernel", 1, defaults.pool_kernel, "Odd average-pooling width over token scores."),
        (
            "--fixed-layer",
            0,
            None,
            "Selection layer of fastkv, filter layer of gemfilter (default: 15 resp. 13 of 32 layers, scaled).",
        ),
        (
            "--kv-layer-groups",
            1,
            None,
            "KV cache groups (buckets of consecutive layers, each with its own block table); must divide "
            "the model's depth. Layers after the selection layer free their blocks per group. Default: the "
            "largest divisor of the depth up to 10, or 1 with --kv-budget.",
        ),
    ):
        group.add_argument(option, type=_int_at_least(minimum), default=default, help=text)
    group.add_argument(
        "--asl-tau",
        type=_tau,
        default=defaults.tau,
        help="Relative rank-variance threshold in (0, 1]; the first layer below it is the selection layer.",
    )
    for option, default, text in (
        (
            "--kv-budget-auto-low",
            defaults.kv_budget_auto_low,
            "With --kv-budget auto: pool usage up to which a new request keeps full KV.",
        ),
        (
            "--kv-budget-auto-high",
            defaults.kv_budget_auto_high,
            "With --kv-budget auto: pool usage from which a new request gets --kv-budget-min.",
        ),
    ):
        group.add_argument(option, type=_usage, default=None, help=f"{text} Default: {default}.")
    group.add_argument(
        "--kv-budget-heads",
        choices=BUDGET_HEADS,
        default=None,
        help="How --kv-budget keeps tokens in a layer. shared (default): one set of B tokens for all KV heads, "
        "ranked by the layer's window scores summed over every head. per-kv-head: each KV head its own B tokens "
        "(SnapKV's rule).",
    )
    group.add_argument(
        "--kv-budget-layers",
        choices=BUDGET_LAYERS,
        default=None,
        help="Which scores --kv-budget ranks a layer's tokens by. shared (default, except pyramidkv): one set of "
        "B tokens kept in every layer, ranked by the sum over all layers of each layer's window scores as shares "
        "of that layer's total. per-layer (pyramidkv's default): each layer by its own scores (SnapKV's rule).",
    )
    group.add_argument(
        "--asl-two-pass",
        action="store_true",
        default=defaults.two_pass,
        help="asl only: stop at the adaptive selection layer and re-run the whole model on the selected "
        "--asl-select-k tokens with fresh positions (GemFilter style); every layer keeps only those tokens and "
        "the rest of the prompt's KV blocks return to the pool. If no layer passes --asl-tau, nothing is pruned.",
    )
    return parser


def pruner_config_from_namespace(args: argparse.Namespace) -> PrunerConfig:
    """Only the flags the user gave override the defaults."""
    raw: dict[str, Any] = {}
    for field, option in FLAGS.items():
        value = getattr(args, option.lstrip("-").replace("-", "_"), None)
        if value is not None:
            raw[field] = value
    return PrunerConfig.from_dict(raw)
