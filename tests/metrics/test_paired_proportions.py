"""Wilson, Newcombe's paired interval and McNemar's test: hand-computed cases, a published
value, scipy where scipy has the pieces, and the edge cases (nothing disagrees, one direction,
n = 1, all right, all wrong).

Notation of the paired table (reference = FP32, candidate = the simulated format):
a both right, b only the reference right, c only the candidate right, d both wrong; n = a+b+c+d.
z = 1.959964 for 95 % (z^2 = 3.841459).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest, norm

from quantlens.metrics.proportions import (
    PairedTable,
    mcnemar_test,
    newcombe_paired_interval,
    newcombe_phi,
    normal_quantile,
    wilson_interval,
)


def test_normal_quantile_matches_scipy():
    for confidence in (0.5, 0.8, 0.9, 0.95, 0.99, 0.999):
        assert normal_quantile(confidence) == pytest.approx(norm.ppf(1 - (1 - confidence) / 2), abs=1e-12)
    assert normal_quantile(0.95) == pytest.approx(1.959964, abs=1e-6)
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="confidence"):
            normal_quantile(bad)


@pytest.mark.parametrize("n", [1, 2, 7, 30, 600])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_matches_scipy(n, confidence):
    for x in sorted({*range(0, n + 1, max(1, n // 50)), 1, n - 1, n} - {-1}):  # every count up to 50, then a grid
        expected = binomtest(x, n).proportion_ci(confidence_level=confidence, method="wilson")
        assert wilson_interval(x, n, confidence) == pytest.approx((expected.low, expected.high), abs=1e-12)


def test_wilson_by_hand():
    # 98 of 100: centre = (98 + z^2/2) / (100 + z^2) = 99.920729 / 103.841459 = 0.962243
    # half = z sqrt(98 * 2 / 100 + z^2 / 4) / 103.841459 = 1.959964 * sqrt(2.920365) / 103.841459 = 0.032255
    assert wilson_interval(98, 100) == pytest.approx((0.929988, 0.994498), abs=1e-6)
    # 0 of 600: lower 0 exactly, upper z^2 / (n + z^2) = 3.841459 / 603.841459 = 0.006362
    assert wilson_interval(0, 600) == (0.0, pytest.approx(0.006362, abs=1e-6))
    # 1 of 1: lower n / (n + z^2) = 1 / 4.841459 = 0.206549, upper 1 exactly
    assert wilson_interval(1, 1) == (pytest.approx(0.206549, abs=1e-6), 1.0)


@pytest.mark.parametrize(("x", "n"), [(1, 0), (3, 2), (-1, 5), (1.5, 4), (True, 3)])
def test_wilson_refuses_what_is_not_a_proportion(x, n):
    with pytest.raises(ValueError):
        wilson_interval(x, n)


def test_table_from_outcomes_and_its_refusals():
    table = PairedTable.from_outcomes([1, 1, 1, 0, 0, 0], [1, 0, 0, 1, 0, 0])
    assert (table.both, table.only_reference, table.only_candidate, table.neither) == (1, 2, 1, 2)
    assert table.n == 6 and table.discordant == 3 and table.difference == pytest.approx(-1 / 6)
    with pytest.raises(ValueError, match="equal length"):
        PairedTable.from_outcomes([True, False], [True])
    with pytest.raises(ValueError, match="count"):
        PairedTable(1, -1, 0, 0)


def test_phi_follows_newcombe_including_the_n_over_2_shrinkage():
    # ad - bc = 0 - 20 < 0: phi = -20 / sqrt(98 * 2 * 90 * 10) = -20 / 420
    assert newcombe_phi(PairedTable(88, 10, 2, 0)) == pytest.approx(-20 / 420)
    # ad - bc = 800 > n/2 = 50: phi = (800 - 50) / sqrt(80 * 20 * 90 * 10) = 750 / 1200
    assert newcombe_phi(PairedTable(80, 0, 10, 10)) == pytest.approx(0.625)
    # 0 < ad - bc = 2 - 1 = 1 <= n/2 = 2.5: phi = 0
    assert newcombe_phi(PairedTable(1, 1, 1, 2)) == 0.0
    # ad - bc = 8 - 1 = 7 > n/2 = 4: phi = (7 - 4) / sqrt(3 * 5 * 3 * 5) = 3 / 15
    assert newcombe_phi(PairedTable(2, 1, 1, 4)) == pytest.approx(0.2)
    # an empty margin (everything right): the denominator is 0, phi = 0
    assert newcombe_phi(PairedTable(600, 0, 0, 0)) == 0.0


def test_newcombe_by_hand_reference_better():
    # a=88 b=10 c=2 d=0, n=100: p_ref = 0.98, p_cand = 0.90, theta = -0.08, phi = -0.047619
    # Wilson: ref (0.929988, 0.994498), cand (0.825634, 0.944771)
    # lower: p_c - l_c = 0.074366, u_r - p_r = 0.014498
    #   radicand = 0.074366^2 + 2 * 0.047619 * 0.074366 * 0.014498 + 0.014498^2 = 0.0058431
    #   lower = -0.08 - sqrt(0.0058431) = -0.08 - 0.076440 = -0.156440
    # upper: u_c - p_c = 0.044771, p_r - l_r = 0.050012
    #   radicand = 0.044771^2 + 2 * 0.047619 * 0.044771 * 0.050012 + 0.050012^2 = 0.0047189
    #   upper = -0.08 + sqrt(0.0047189) = -0.08 + 0.068694 = -0.011306
    low, high = newcombe_paired_interval(PairedTable(88, 10, 2, 0))
    assert (low, high) == pytest.approx((-0.156440, -0.011306), abs=1e-6)


def test_newcombe_by_hand_all_disagreements_one_way():
    # a=80 b=0 c=10 d=10, n=100: every disagreement favours the candidate; theta = 0.10, phi = 0.625
    # Wilson: ref 80/100 (0.711171, 0.866633), cand 90/100 (0.825634, 0.944771)
    # lower: 0.074366^2 - 2 * 0.625 * 0.074366 * 0.066633 + 0.066633^2 = 0.0037762 -> 0.10 - 0.061451
    # upper: 0.044771^2 - 2 * 0.625 * 0.044771 * 0.088829 + 0.088829^2 = 0.0049239 -> 0.10 + 0.070170
    assert newcombe_paired_interval(PairedTable(80, 0, 10, 10)) == pytest.approx((0.038549, 0.170170), abs=1e-6)


def test_newcombe_with_no_disagreement_keeps_a_positive_width():
    # a=540 b=c=0 d=60, n=600: theta = 0; phi = (540*60 - 0 - 300) / sqrt(540*60*540*60) = 32100 / 32400
    # Wilson for 540/600: (0.873392, 0.921518); p - l = 0.026608, u - p = 0.021518
    # radicand = 0.026608^2 - 2 * 0.990741 * 0.026608 * 0.021518 + 0.021518^2 = 3.6504e-5 -> +-0.006042
    low, high = newcombe_paired_interval(PairedTable(540, 0, 0, 60))
    assert (low, high) == pytest.approx((-0.006042, 0.006042), abs=1e-6)
    assert 0.005 <= high - 0.0 <= 0.007  # about +-0.6 percentage points at n = 600, not [0, 0]


def test_newcombe_all_right_all_wrong_and_a_single_sample():
    # all wrong (a=b=c=0, d=600): phi = 0 (empty margin); p = l = 0, u = z^2 / (n + z^2) = 0.006362
    # radicand = 0 + u^2 on both sides -> +-0.006362
    assert newcombe_paired_interval(PairedTable(0, 0, 0, 600)) == pytest.approx((-0.006362, 0.006362), abs=1e-6)
    assert newcombe_paired_interval(PairedTable(600, 0, 0, 0)) == pytest.approx((-0.006362, 0.006362), abs=1e-6)
    # n = 1, both right: Wilson (0.206549, 1); phi = 0; +-(1 - 0.206549) = +-0.793451
    assert newcombe_paired_interval(PairedTable(1, 0, 0, 0)) == pytest.approx((-0.793451, 0.793451), abs=1e-6)
    # n = 1, only the reference right: theta = -1; the lower limit is clipped at -1
    low, high = newcombe_paired_interval(PairedTable(0, 1, 0, 0))
    assert low == -1.0 and -1.0 < high < 1.0
    with pytest.raises(ValueError, match="at least one sample"):
        newcombe_paired_interval(PairedTable(0, 0, 0, 0))


def test_newcombe_matches_a_published_value():
    # Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables" (2017), ch. 8:
    # complete response before/after consolidation therapy (Cavo et al. 2012), table
    # [[59, 6], [16, 80]]; Newcombe square-and-add 95 % CI for p1 - p2: -0.0621 (-0.1186 to -0.0046).
    # Our difference is column minus row (candidate minus reference), so the signs flip.
    table = PairedTable(59, 6, 16, 80)
    assert table.difference == pytest.approx(0.0621, abs=5e-5)
    assert newcombe_paired_interval(table) == pytest.approx((0.0046, 0.1186), abs=5e-5)


def test_newcombe_contains_the_estimate_and_stays_in_range():
    rng = np.random.default_rng(0)
    for _ in range(300):
        a, b, c, d = (int(v) for v in rng.integers(0, 30, size=4))
        if a + b + c + d == 0:
            continue
        table = PairedTable(a, b, c, d)
        low, high = newcombe_paired_interval(table, 0.95)
        assert -1.0 <= low <= table.difference <= high <= 1.0
        assert high > low  # never a point, whatever the counts
        wide = newcombe_paired_interval(table, 0.99)
        assert wide[0] <= low + 1e-12 and high <= wide[1] + 1e-12


@pytest.mark.parametrize(("b", "c"), [(10, 2), (2, 10), (0, 0), (0, 7), (5, 5), (1, 0), (40, 31), (0, 1000)])
def test_mcnemar_is_the_exact_binomial_test_on_discordant_pairs(b, c):
    result = mcnemar_test(b, c)
    expected = 1.0 if b + c == 0 else binomtest(c, b + c, 0.5, alternative="two-sided").pvalue
    assert result.exact_p == pytest.approx(expected, rel=1e-12)
    assert result.mid_p <= result.exact_p


def test_mcnemar_by_hand():
    # b=10, c=2: X ~ Bin(12, 1/2); P(X <= 2) = (1 + 12 + 66) / 4096 = 79/4096, P(X = 2) = 66/4096
    # exact = 2 * 79/4096 = 158/4096 = 0.038574; mid-p = (158 - 66)/4096 = 92/4096 = 0.022461
    result = mcnemar_test(10, 2)
    assert result.exact_p == pytest.approx(158 / 4096) and result.mid_p == pytest.approx(92 / 4096)
    # b = c: nothing favours either model; exact 2 P(X <= k) capped at 1, mid-p exactly 1
    assert mcnemar_test(5, 5).exact_p == 1.0 and mcnemar_test(5, 5).mid_p == pytest.approx(1.0)
    # all 7 discordant pairs one way: exact = 2 / 2^7 = 0.015625; mid-p = 1 / 2^7
    assert mcnemar_test(0, 7).exact_p == pytest.approx(2 / 128) and mcnemar_test(0, 7).mid_p == pytest.approx(1 / 128)
    assert mcnemar_test(0, 0).exact_p == mcnemar_test(0, 0).mid_p == 1.0
    assert math.isclose(mcnemar_test(1, 0).exact_p, 1.0)  # one discordant pair proves nothing
