import pytest

from benchmarks.accuracy.scoring import mean_score, string_match_all


def test_fraction_of_references_found_case_insensitive():
    assert string_match_all("The numbers are 123 and ABC-def.", ["123", "abc-DEF", "999", "4"]) == 0.5


def test_all_and_none_found():
    assert string_match_all("x 1 y 2", ["1", "2"]) == 1.0
    assert string_match_all("", ["1"]) == 0.0


def test_mean_score_is_percent_over_samples():
    assert mean_score(["a b", "c"], [["a", "b"], ["c", "d"]]) == pytest.approx(75.0)


def test_empty_references_refused():
    with pytest.raises(ValueError):
        string_match_all("text", [])
    with pytest.raises(ValueError):
        mean_score(["a"], [["a"], ["b"]])
