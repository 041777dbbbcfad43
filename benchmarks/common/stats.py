"""Scores with 95% Wilson intervals, so that no difference is read without its uncertainty.

A prompt's score is RULER's string_match_all in [0, 1] (0 or 1 for one needle). The
interval treats the mean over n prompts as a binomial proportion: a score in [0, 1]
with mean p has variance at most p(1 - p), so for partial scores (several needles
per prompt) the interval errs on the wide side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z_95 = 1.959963984540054


def wilson_interval(proportion: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """(low, high) of the Wilson score interval for a proportion observed over n trials."""
    if n <= 0:
        raise ValueError("a Wilson interval needs at least one trial")
    if not 0.0 <= proportion <= 1.0:
        raise ValueError(f"proportion must be in [0, 1], got {proportion}")
    denominator = 1 + z * z / n
    centre = (proportion + z * z / (2 * n)) / denominator
    half = z * math.sqrt(proportion * (1 - proportion) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Score:
    """A mean score in percent over n prompts, with its 95% Wilson interval."""

    mean: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.0f} [{self.low:.0f}, {self.high:.0f}]"

    def overlaps(self, other: Score) -> bool:
        return self.low <= other.high and other.low <= self.high


def score(values: Sequence[float]) -> Score:
    """The Score of per-prompt scores in [0, 1]."""
    if not values:
        raise ValueError("no prompt scored")
    mean = sum(values) / len(values)
    low, high = wilson_interval(mean, len(values))
    return Score(100.0 * mean, 100.0 * low, 100.0 * high, len(values))


def difference(pruned: Score, full: Score) -> str:
    """The difference in points, and whether the intervals separate it from noise."""
    delta = pruned.mean - full.mean
    verdict = "intervals overlap" if pruned.overlaps(full) else ("higher" if delta > 0 else "lower")
    return f"{delta:+.1f} ({verdict})"


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test: the chance of a split at least this uneven between two rules that are
    equally good on the prompts where they disagree (ties, where both agree, carry no information)."""
    if wins < 0 or losses < 0:
        raise ValueError("counts must be >= 0")
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)
