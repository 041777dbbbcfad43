"""The budget under memory pressure: the auto rule and the shrink step."""

from __future__ import annotations

import pytest

from asl_vllm.pressure import auto_budget, shrunk_keep


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (0.0, None),
        (0.5, None),  # at the low threshold: still full KV
        (0.6, 1024 + 5000 * 3 // 4),  # a quarter of the way: three quarters of the room above the floor
        (0.7, 1024 + 5000 // 2),
        (0.89, 1024 + 125),
        (0.9, 1024),
        (1.0, 1024),
    ],
)
def test_auto_budget_is_linear_in_usage_between_the_thresholds(usage, expected):
    assert auto_budget(usage, 6024, 1024, 0.5, 0.9) == expected


def test_auto_budget_keeps_full_kv_where_a_budget_would_keep_every_token():
    assert auto_budget(1.0, 900, 1024, 0.5, 0.9) is None  # the prompt is under the floor
    assert auto_budget(0.50001, 6024, 1024, 0.5, 0.9) is None  # rounds to the whole prompt


def test_auto_budget_never_increases_with_usage():
    budgets = [auto_budget(step / 100, 8000, 512, 0.3, 0.8) or 8000 for step in range(101)]
    assert budgets == sorted(budgets, reverse=True)
    assert budgets[0] == 8000 and budgets[-1] == 512


def test_a_shrink_halves_what_is_kept_in_whole_blocks_down_to_the_floor():
    # 6000 tokens with full KV, blocks of 128, floor 1024 (kept as 1136: the head freed is whole blocks).
    assert shrunk_keep(6000, 6000, 1024, 128) == 6000 - (3000 // 128) * 128  # 3056
    assert shrunk_keep(3056, 6000, 1024, 128) == 6000 - (6000 - 1528) // 128 * 128  # 1648
    assert shrunk_keep(1648, 6000, 1024, 128) == 1136  # half would be under the floor
    assert shrunk_keep(1136, 6000, 1024, 128) is None


def test_a_shrink_always_frees_a_block_when_it_shrinks():
    for kept in range(200, 2000, 7):
        keep = shrunk_keep(kept, 2000, 100, 128)
        if keep is not None:
            assert keep < kept and (2000 - keep) % 128 == 0
