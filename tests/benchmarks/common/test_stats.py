import pytest

from benchmarks.common.stats import Score, difference, score, sign_test, wilson_interval


def test_wilson_interval_known_values():
    # Wilson's 95% interval for 10/20 and 18/20 (z = 1.96).
    assert wilson_interval(0.5, 20) == pytest.approx((0.2993, 0.7007), abs=1e-4)
    assert wilson_interval(0.9, 20) == pytest.approx((0.6990, 0.9721), abs=1e-4)


def test_wilson_interval_at_the_edges_stays_inside_zero_one():
    low, high = wilson_interval(1.0, 20)
    assert high == 1.0 and low == pytest.approx(0.8389, abs=1e-4)
    low, high = wilson_interval(0.0, 20)
    assert low == 0.0 and high == pytest.approx(0.1611, abs=1e-4)


def test_wilson_interval_narrows_with_more_prompts():
    wide, narrow = wilson_interval(0.5, 20), wilson_interval(0.5, 200)
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 2.5  # about 1 / sqrt(10)


def test_wilson_interval_refuses_bad_input():
    with pytest.raises(ValueError):
        wilson_interval(0.5, 0)
    with pytest.raises(ValueError):
        wilson_interval(1.5, 10)


def test_score_is_percent_with_interval():
    found = score([1.0] * 18 + [0.0] * 2)
    assert (found.mean, found.n) == (90.0, 20)
    assert str(found) == "90 [70, 97]"


def test_partial_scores_average():
    assert score([0.25, 0.75]).mean == pytest.approx(50.0)


def test_difference_claims_only_separated_intervals():
    full = Score(95.0, 76.4, 99.1, 20)
    close = Score(90.0, 69.9, 97.2, 20)
    far = Score(20.0, 8.1, 41.6, 20)
    assert difference(close, full) == "-5.0 (intervals overlap)"
    assert difference(far, full) == "-75.0 (lower)"
    assert difference(full, far) == "+75.0 (higher)"


def test_sign_test_known_values():
    # 10 disagreements all one way: 2 / 2**10; 6 against 4 is a coin's everyday split.
    assert sign_test(10, 0) == pytest.approx(2 / 1024)
    assert sign_test(0, 10) == pytest.approx(2 / 1024)
    assert sign_test(6, 4) == pytest.approx(2 * (1 + 10 + 45 + 120 + 210) / 1024)
    assert sign_test(5, 5) == 1.0
    assert sign_test(0, 0) == 1.0


def test_sign_test_refuses_negative_counts():
    with pytest.raises(ValueError):
        sign_test(-1, 3)
