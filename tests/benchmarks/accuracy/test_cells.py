from collections import Counter

import pytest

from benchmarks.accuracy.cells import MIN_PROMPTS_PER_CELL, cell_note, interleave, needle_prompts, spread, task_prompts


def test_spread_covers_every_combination_evenly():
    points = spread(12, ["noise", "prose"], [0.0, 0.5, 1.0])
    assert Counter(point[:2] for point in points) == {
        (haystack, depth): 2 for haystack in ("noise", "prose") for depth in (0.0, 0.5, 1.0)
    }
    assert [point[2] for point in points] == [0] * 6 + [1] * 6


def test_spread_uneven_count_differs_by_at_most_one():
    counts = Counter(point[0] for point in spread(20, [4000, 6000, 8000]))
    assert counts == {4000: 7, 6000: 7, 8000: 6}


def test_spread_refuses_empty():
    with pytest.raises(ValueError):
        spread(0, [1])
    with pytest.raises(ValueError):
        spread(3, [])


def test_needle_cell_is_config_and_length():
    prompts = needle_prompts([4000, 8000], ["noise", "prose"], [0.0, 0.25, 0.5, 0.75, 1.0], 20)
    assert Counter(p.length for p in prompts) == {4000: 20, 8000: 20}
    per_square = Counter((p.length, p.haystack, p.depth) for p in prompts)
    assert set(per_square.values()) == {2}
    assert len({p.key for p in prompts}) == 40


def test_task_cell_is_config_and_task():
    prompts = task_prompts(["niah_multikey_1", "niah_multivalue"], [4000, 6000, 8000], 20)
    assert Counter(p.task for p in prompts) == {"niah_multikey_1": 20, "niah_multivalue": 20}
    assert Counter(p.length for p in prompts if p.task == "niah_multivalue") == {4000: 7, 6000: 7, 8000: 6}
    assert len({p.key for p in prompts}) == 40


def test_interleave_round_robins_the_groups():
    ordered = interleave([("a", 1), ("a", 2), ("a", 3), ("b", 1)], key=lambda item: item[0])
    assert ordered == [("a", 1), ("b", 1), ("a", 2), ("a", 3)]


def test_cell_note_warns_below_the_minimum():
    assert cell_note(MIN_PROMPTS_PER_CELL) == "20 prompts per cell"
    assert "too wide" in cell_note(6)
