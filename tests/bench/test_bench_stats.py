"""Summary statistics against numpy/scipy references, and the bootstrap's behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from quantlens.bench.stats import (
    NOISY_ROBUST_CV,
    ROBUST_CV_READABLE_UP_TO,
    bootstrap_ci,
    bootstrap_medians,
    describe_spread,
    speedup,
    summarize,
)
from quantlens.errors import QuantlensError


@pytest.fixture
def skewed() -> np.ndarray:
    """Timing-like data: log-normal around 2 ms, with a few slow outliers."""
    rng = np.random.default_rng(7)
    x = rng.lognormal(mean=math.log(2e-3), sigma=0.1, size=997)
    x[::100] *= 3.0
    return x


def test_summary_matches_numpy_and_scipy(skewed):
    s = summarize(skewed)
    assert s.count == skewed.size
    assert s.mean == pytest.approx(np.mean(skewed), rel=1e-12)
    assert s.median == pytest.approx(np.median(skewed), rel=1e-12)
    assert s.p50 == s.median
    assert s.std == pytest.approx(np.std(skewed, ddof=1), rel=1e-12)
    assert s.min == skewed.min() and s.max == skewed.max()
    q1, q3, p90, p95, p99 = np.percentile(skewed, [25, 75, 90, 95, 99])
    assert (s.q1, s.q3, s.p90, s.p95, s.p99) == pytest.approx((q1, q3, p90, p95, p99), rel=1e-12)
    assert s.iqr == pytest.approx(sps.iqr(skewed), rel=1e-12)
    assert s.mad == pytest.approx(sps.median_abs_deviation(skewed), rel=1e-12)
    assert s.cv == pytest.approx(sps.variation(skewed, ddof=1), rel=1e-12)
    assert s.robust_cv == pytest.approx(sps.iqr(skewed, scale="normal") / np.median(skewed), rel=1e-9)
    assert s.mad_cv == pytest.approx(sps.median_abs_deviation(skewed, scale="normal") / np.median(skewed), rel=1e-9)
    assert s.median_ci[0] <= s.median <= s.median_ci[1]
    assert s.mean_ci[0] <= s.mean <= s.mean_ci[1]


def test_summary_of_hand_computed_data():
    s = summarize([4.0, 1.0, 3.0, 2.0, 100.0])
    assert (s.count, s.median, s.mean, s.min, s.max) == (5, 3.0, 22.0, 1.0, 100.0)
    assert (s.q1, s.q3, s.iqr, s.mad) == (2.0, 4.0, 2.0, 1.0)
    assert s.std == pytest.approx(math.sqrt(((np.array([1, 2, 3, 4, 100]) - 22.0) ** 2).sum() / 4))


def test_single_sample_has_no_spread_but_a_degenerate_ci():
    s = summarize([0.5])
    assert s.median == s.mean == 0.5
    assert math.isnan(s.std) and math.isnan(s.cv)
    assert s.median_ci == (0.5, 0.5) and s.mean_ci == (0.5, 0.5)
    assert s.iqr == 0.0 and s.robust_cv == 0.0


def test_robust_cv_ignores_a_few_outliers_but_not_a_second_mode():
    rng = np.random.default_rng(1)
    steady = rng.normal(1.0, 0.01, size=400)
    with_outliers = steady.copy()
    with_outliers[:8] = 10.0  # 2 % wild outliers: the classic CV explodes, the robust one does not
    assert summarize(with_outliers).cv > 1.0
    assert summarize(with_outliers).robust_cv < NOISY_ROBUST_CV
    two_modes = steady.copy()
    two_modes[::2] *= 1.6  # half the samples slowed: a busy machine
    assert summarize(two_modes).robust_cv > NOISY_ROBUST_CV


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [1.0, float("inf")], [[1.0, 2.0]]])
def test_bad_samples_are_refused(bad):
    with pytest.raises(QuantlensError):
        summarize(bad)


def test_bad_bootstrap_arguments_are_refused():
    with pytest.raises(QuantlensError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=1.5)
    with pytest.raises(QuantlensError, match="resamples"):
        bootstrap_ci([1.0, 2.0], resamples=0)
    with pytest.raises(QuantlensError, match="statistic"):
        bootstrap_ci([1.0, 2.0], statistic="mode")


def test_bootstrap_is_seeded(skewed):
    assert bootstrap_ci(skewed, seed=3) == bootstrap_ci(skewed, seed=3)
    assert bootstrap_ci(skewed, statistic="mean", seed=3) == bootstrap_ci(skewed, statistic="mean", seed=3)
    assert summarize(skewed) == summarize(skewed)
    assert bootstrap_ci(skewed, statistic="mean", seed=3) != bootstrap_ci(skewed, statistic="mean", seed=4)


@pytest.mark.parametrize("n", [1, 2, 7, 8, 101])
def test_exact_bootstrap_medians_match_brute_force_resampling(n):
    x = np.sort(np.random.default_rng(n).lognormal(size=n))
    exact = bootstrap_medians(x, 100_000, np.random.default_rng(0))
    indices = np.random.default_rng(1).integers(0, n, size=(100_000, n))
    brute = np.median(x[indices], axis=1)
    for value in np.unique(brute)[:20]:  # the same distribution, value by value
        assert np.mean(exact <= value) == pytest.approx(np.mean(brute <= value), abs=0.01)


def test_bootstrap_ci_covers_the_true_median_and_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(2024)
    trials, n = 400, 51
    median_hits = mean_hits = 0
    for trial in range(trials):
        skewed = rng.lognormal(mean=0.0, sigma=1.0, size=n)  # true median exp(0) = 1
        low, high = bootstrap_ci(skewed, statistic="median", seed=trial)
        median_hits += low <= 1.0 <= high
        normal = rng.normal(5.0, 1.0, size=n)  # true mean 5
        low, high = bootstrap_ci(normal, statistic="mean", seed=trial)
        mean_hits += low <= 5.0 <= high
    # Nominal 95 %; the binomial spread over 400 trials is ~1.1 %, the percentile bootstrap
    # under-covers a little at small n.
    assert 0.91 <= median_hits / trials <= 0.985
    assert 0.91 <= mean_hits / trials <= 0.985


def test_speedup_is_the_ratio_of_medians_with_a_ci(skewed):
    fast = skewed / 2.0
    result = speedup(skewed, fast, baseline_name="fp32", candidate_name="int8")
    assert result.ratio == pytest.approx(np.median(skewed) / np.median(fast))
    assert result.ratio == pytest.approx(2.0)
    assert result.ci[0] <= result.ratio <= result.ci[1]
    assert result.significant
    assert (result.baseline, result.candidate) == ("fp32", "int8")


def test_speedup_of_two_draws_of_the_same_distribution_is_not_significant():
    rng = np.random.default_rng(5)
    a = rng.lognormal(0.0, 0.1, size=300)
    b = rng.lognormal(0.0, 0.1, size=300)
    result = speedup(a, b)
    assert result.ci[0] <= 1.0 <= result.ci[1]
    assert not result.significant


def test_speedup_needs_positive_medians():
    with pytest.raises(QuantlensError, match="positive"):
        speedup([0.0, 0.0, 1.0], [1.0, 2.0])


def test_spread_is_a_percentage_only_while_one_can_read_it():
    steady = summarize([1e-3, 1.1e-3, 0.9e-3, 1.05e-3])
    assert describe_spread(steady) == f"robust CV {steady.robust_cv:.1%}"
    # Fast calls with a third of them stalled for 90 ms: the IQR spans both, robust CV ~ 450x.
    stalled = summarize([0.15e-3] * 40 + [90e-3] * 20)
    assert stalled.robust_cv > ROBUST_CV_READABLE_UP_TO * 100
    text = describe_spread(stalled)
    assert "%" not in text.replace("over 100%", "") and "90 ms or more against a median of 0.15 ms (600x)" in text
    zero = summarize([0.0] * 6 + [1e-6] * 4)  # calls below the clock's resolution
    assert np.isnan(zero.robust_cv) and "undefined" in describe_spread(zero)
