"""PyramidKV (Cai et al., arXiv 2406.02069): more tokens in early layers, fewer in deep ones.

PyramidKV's per-layer budgets fall linearly with depth from 2B - B/beta to
B/beta (beta = 20), averaging --kv-budget B. Every layer of one KV cache group
must keep the same tokens (one block table per group), so here the pyramid is
over the groups: the default layer groups of a pruner without a budget, and
one group makes it SnapKV. Budgets are counted in freed blocks, so that every
group keeps a whole number of blocks fewer than the prompt, at least the
window, and all of them together exactly what B keeps in every layer.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

from asl_vllm.budget import kept_tokens
from asl_vllm.pruners.snapkv import SnapKV

if TYPE_CHECKING:
    from asl_vllm.settings import PrunerSettings

# PyramidKV's ratio of the mean budget to the deepest layer's.
BETA = 20


class PyramidKV(SnapKV):
    name = "pyramidkv"
    summary = (
        "no selection, each layer group keeps a share of --kv-budget that falls linearly with depth, "
        "the same tokens in all as --kv-budget in every layer."
    )
    uniform_budget = False

    @classmethod
    def group_keeps(cls, config: PrunerSettings, num_tokens: int, block_size: int, num_groups: int) -> list[int] | None:
        if config.kv_budget is None:
            return None
        return pyramid_keeps(num_tokens, config.kv_budget, block_size, num_groups, config.window)


def pyramid_keeps(num_tokens: int, budget: int, block_size: int, num_groups: int, window: int) -> list[int]:
    """Tokens each group keeps, shallow to deep: non-increasing, >= `window`, summing to `budget`'s uniform keep.

    The spread is PyramidKV's, narrowed where the prompt is too short for it: the first group can keep at most
    the whole prompt, the last at least the window. Targets are linear in freed blocks; rounding them by
    largest remainder keeps the sum exact and the order (later groups win ties).
    """
    uniform = kept_tokens(num_tokens, budget, block_size)
    freed = (num_tokens - uniform) // block_size
    most_freed = (num_tokens - window) // block_size
    if num_groups == 1 or freed == 0:
        return [uniform] * num_groups
    spread = min(Fraction(uniform * (BETA - 1), BETA * block_size), Fraction(freed), Fraction(most_freed - freed))
    targets = [freed + spread * (Fraction(2 * group, num_groups - 1) - 1) for group in range(num_groups)]
    blocks = [int(target) for target in targets]
    by_remainder = sorted(range(num_groups), key=lambda group: (targets[group] - blocks[group], group), reverse=True)
    for group in by_remainder[: num_groups * freed - sum(blocks)]:
        blocks[group] += 1
    return [num_tokens - count * block_size for count in blocks]
