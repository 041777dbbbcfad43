"""PyramidKV's per-group budgets: totals, shape, block alignment, short prompts, default groups."""

from __future__ import annotations

import pytest

from asl_vllm.budget import kept_tokens
from asl_vllm.config import PrunerConfig
from asl_vllm.pruners.pyramidkv import BETA, PyramidKV, pyramid_keeps

CASES = [
    (num_tokens, budget, block_size, groups)
    for num_tokens in (33, 100, 530, 1000, 4000, 8191)
    for budget in (32, 100, 512, 1024)
    for block_size in (1, 16, 128)
    for groups in (1, 2, 3, 10, 30)
]


@pytest.mark.parametrize(("num_tokens", "budget", "block_size", "groups"), CASES)
def test_groups_keep_what_the_budget_keeps_in_whole_blocks_falling_with_depth(num_tokens, budget, block_size, groups):
    window = 32
    keeps = pyramid_keeps(num_tokens, budget, block_size, groups, window)
    assert len(keeps) == groups
    assert sum(keeps) == groups * kept_tokens(num_tokens, budget, block_size)
    assert keeps == sorted(keeps, reverse=True)
    assert all((num_tokens - keep) % block_size == 0 for keep in keeps)
    assert all(min(window, num_tokens) <= keep <= num_tokens for keep in keeps)


def test_a_long_prompt_gets_pyramidkvs_spread():
    """From 2B - B/beta down to B/beta (51 tokens), each rounded to whole blocks of 16."""
    keeps = pyramid_keeps(8000, 1024, 16, 10, 32)
    assert keeps[0] == 2000 and keeps[-1] == 48
    assert keeps[0] - keeps[-1] <= 2 * 1024 * (1 - 1 / BETA) + 16
    steps = [keeps[g] - keeps[g + 1] for g in range(9)]
    assert max(steps) - min(steps) <= 16


def test_short_prompts_narrow_the_pyramid_to_fit():
    # B keeps 1036 of 1100 tokens (4 blocks freed per layer); the first group cannot keep more than the
    # prompt, so the groups free 0..8 blocks instead of PyramidKV's wider spread.
    assert pyramid_keeps(1100, 1024, 16, 10, 32) == [1100, 1084, 1068, 1052, 1036, 1036, 1020, 1004, 988, 972]
    assert pyramid_keeps(1000, 1024, 16, 10, 32) == [1000] * 10
    assert pyramid_keeps(4000, 512, 16, 1, 32) == [kept_tokens(4000, 512, 16)]


def test_per_group_budgets_keep_the_default_layer_groups():
    assert PrunerConfig(pruner="pyramidkv", kv_budget=512).resolve(30).layer_groups == 10
    assert PrunerConfig(pruner="snapkv", kv_budget=512).resolve(30).layer_groups == 1
    config = PrunerConfig(pruner="pyramidkv", kv_budget=512, layer_groups=5).resolve(30)
    assert PyramidKV.group_keeps(config, 4000, 16, 5) == pyramid_keeps(4000, 512, 16, 5, 32)
