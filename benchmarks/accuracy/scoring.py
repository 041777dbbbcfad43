"""RULER's string_match_all: the fraction of reference strings found in the output, case-insensitive."""

from __future__ import annotations

from collections.abc import Sequence


def string_match_all(prediction: str, references: Sequence[str]) -> float:
    """Score of one output in [0, 1]: the share of `references` that occur in `prediction`."""
    if not references:
        raise ValueError("string_match_all needs at least one reference")
    found = prediction.lower()
    return sum(reference.lower() in found for reference in references) / len(references)


def mean_score(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """RULER's task score in percent: the mean string_match_all over samples."""
    if len(predictions) != len(references) or not predictions:
        raise ValueError("need one non-empty list of references per prediction")
    return 100.0 * sum(map(string_match_all, predictions, references)) / len(predictions)
