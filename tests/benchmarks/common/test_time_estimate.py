import pytest

from benchmarks.accuracy import niah, ruler
from benchmarks.common.configs import Config, parse
from benchmarks.common.time_estimate import (
    ENGINE_START_SECONDS,
    SCORING_OVERHEAD,
    Work,
    decode_step_seconds,
    estimate,
    prefill_fraction,
    prefill_seconds,
)
from benchmarks.serving import performance as serving

FULL_RUN_LIMIT_S = 3 * 3600


@pytest.mark.parametrize(("length", "seconds"), [(4000, 5.0), (6000, 10.0), (8000, 17.0)])
def test_prefill_passes_through_the_measured_points(length, seconds):
    assert prefill_seconds(length) == pytest.approx(seconds)


def test_pruned_prefills_cost_less_than_full_except_scoring_only():
    assert prefill_fraction(parse("none"), 8000) == 1.0
    assert prefill_fraction(parse("asl,k=2048,tau=0.3"), 8000) == SCORING_OVERHEAD
    # fastkv: layers 0..14 of 30 on every token (with scoring), the rest on 1024 of 8000.
    assert prefill_fraction(parse("fastkv,k=1024"), 8000) == pytest.approx(0.5 * SCORING_OVERHEAD + 0.5 * 0.128)
    # gemfilter: layers 0..12 once, then the whole model on 1024 of 8000 tokens.
    assert prefill_fraction(parse("gemfilter,k=1024"), 8000) == pytest.approx(13 / 30 * SCORING_OVERHEAD + 0.128)


def test_decode_step_passes_through_the_measured_steps():
    assert decode_step_seconds(1000) == pytest.approx(0.0247)
    assert decode_step_seconds(8000) == pytest.approx(0.0331)


def test_work_counts_prefill_and_decode():
    work = Work(Config("none"), 4000, 10, count=3)
    assert work.seconds == pytest.approx(3 * (5.0 + 10 * 0.0283))


def test_estimate_adds_engine_starts():
    work = [Work(Config("none"), 6000, 0)]
    assert estimate(work, 2) == pytest.approx(10.0 + 2 * ENGINE_START_SECONDS)


def test_the_full_run_fits_three_hours():
    total = sum(module.estimated_seconds(["--full"]) for module in (niah, ruler, serving))
    assert 2 * 3600 < total <= FULL_RUN_LIMIT_S


def test_the_small_run_takes_minutes():
    total = sum(module.estimated_seconds([]) for module in (niah, ruler, serving))
    assert total <= 20 * 60
