"""Intervals and tests for proportions measured twice on the same samples (paired binary outcomes).

Two classifiers, one set of n samples; each sample is either right or wrong under each model,
which sorts the samples into the paired 2x2 table

                      candidate right   candidate wrong
    reference right        a                 b            a + b
    reference wrong        c                 d            c + d
                         a + c             b + d            n

The reference's proportion right is p_ref = (a + b) / n, the candidate's p_cand = (a + c) / n,
and their difference p_cand - p_ref = (c - b) / n depends only on the discordant pairs b and c.
All values here are fractions in [0, 1] (differences in [-1, 1]); x100 gives percentage points.

Why not a bootstrap: resampling the samples of a table with b = c = 0 only ever produces
b* = c* = 0, so the percentile interval collapses to [0, 0] however small n is. The score
intervals below keep an honest width when nothing (or little) disagrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom, norm

# Names written into records beside each interval and p-value, so a reader knows what was computed.
NEWCOMBE_PAIRED = "Newcombe (1998) method 10: hybrid score interval for paired proportions (Wilson + phi)"
MCNEMAR_EXACT = "McNemar exact conditional test: two-sided binomial test of b among b + c discordant pairs, p = 1/2"


def normal_quantile(confidence: float) -> float:
    """z with P(|Z| <= z) = confidence for a standard normal Z (1.959964 for 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    return float(norm.ppf(0.5 + confidence / 2.0))


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{name} must be a count (an integer >= 0), got {value!r}")
    return int(value)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson (1927) score interval for a binomial proportion successes / n.

    The set of p whose score statistic |x/n - p| / sqrt(p (1 - p) / n) is at most z, i.e. the
    roots of a quadratic in p (E. B. Wilson, JASA 22:209, 1927; Newcombe, Stat Med 17:857, 1998):
        centre = (x + z^2/2) / (n + z^2),  half = z sqrt(x (n - x) / n + z^2/4) / (n + z^2).
    It stays inside [0, 1] and keeps a positive width at x = 0 and x = n (upper limit
    z^2 / (n + z^2) at x = 0), unlike the Wald interval.
    """
    x, n = _check_count("successes", successes), _check_count("n", n)
    if n == 0 or x > n:
        raise ValueError(f"a proportion needs 0 <= successes <= n and n >= 1, got {x} of {n}")
    z = normal_quantile(confidence)
    z2 = z * z
    centre = (x + z2 / 2.0) / (n + z2)
    half = z * math.sqrt(x * (n - x) / n + z2 / 4.0) / (n + z2)
    # At x = 0 (x = n) the lower (upper) limit is 0 (1) exactly; rounding must not move it.
    low = 0.0 if x == 0 else max(0.0, centre - half)
    high = 1.0 if x == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class PairedTable:
    """The paired 2x2 table of counts (see the module docstring): both right, only the reference
    right, only the candidate right, both wrong."""

    both: int  # a
    only_reference: int  # b
    only_candidate: int  # c
    neither: int  # d

    def __post_init__(self) -> None:
        for name in ("both", "only_reference", "only_candidate", "neither"):
            object.__setattr__(self, name, _check_count(name, getattr(self, name)))

    @classmethod
    def from_outcomes(cls, reference_right, candidate_right) -> PairedTable:
        """From two boolean arrays (N,) of per-sample outcomes (True = right)."""
        ref, cand = np.asarray(reference_right, dtype=bool), np.asarray(candidate_right, dtype=bool)
        if ref.ndim != 1 or ref.shape != cand.shape:
            raise ValueError(f"paired outcomes need two 1-D arrays of equal length, got {ref.shape} and {cand.shape}")
        return cls(int((ref & cand).sum()), int((ref & ~cand).sum()), int((~ref & cand).sum()),
                   int((~ref & ~cand).sum()))

    @property
    def n(self) -> int:
        return self.both + self.only_reference + self.only_candidate + self.neither

    @property
    def discordant(self) -> int:
        return self.only_reference + self.only_candidate

    @property
    def reference_rate(self) -> float:
        return (self.both + self.only_reference) / self.n

    @property
    def candidate_rate(self) -> float:
        return (self.both + self.only_candidate) / self.n

    @property
    def difference(self) -> float:
        """p_cand - p_ref = (c - b) / n."""
        return (self.only_candidate - self.only_reference) / self.n


def newcombe_phi(table: PairedTable) -> float:
    """Newcombe's (1998) correlation of the two proportions, as used in his method 10.

    phi = max(ad - bc - n/2, 0) / sqrt((a+b)(c+d)(a+c)(b+d)) when ad > bc, and
    (ad - bc) / sqrt(...) otherwise; 0 when a margin is empty (then the denominator is 0).
    The n/2 shrinks a positive correlation, which keeps the interval from collapsing to a
    point when nothing disagrees (with b = c = 0 the raw phi is 1, and at p = 1/2 the
    square-and-add radius below would be exactly 0).
    """
    a, b, c, d = table.both, table.only_reference, table.only_candidate, table.neither
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    if margins == 0:
        return 0.0
    cross = a * d - b * c
    if cross > table.n / 2.0:
        cross -= table.n / 2.0
    elif cross > 0:  # 0 < ad - bc <= n/2
        cross = 0.0
    return cross / math.sqrt(margins)


def newcombe_paired_interval(table: PairedTable, confidence: float = 0.95) -> tuple[float, float]:
    """Confidence interval for p_cand - p_ref on paired data: Newcombe (1998) method 10.

    R. G. Newcombe, "Improved confidence intervals for the difference between binomial
    proportions based on paired data", Statistics in Medicine 17:2635-2650 (1998); also in
    Altman et al., "Statistics with Confidence" (2nd ed., 2000) and Fagerland, Lydersen & Laake,
    "Statistical Analysis of Contingency Tables" (2017), ch. 8 ("Newcombe square-and-add").
    With Wilson limits (l_r, u_r) for p_ref and (l_c, u_c) for p_cand, theta = p_cand - p_ref:
        lower = theta - sqrt((p_c - l_c)^2 - 2 phi (p_c - l_c)(u_r - p_r) + (u_r - p_r)^2)
        upper = theta + sqrt((u_c - p_c)^2 - 2 phi (u_c - p_c)(p_r - l_r) + (p_r - l_r)^2)
    (Newcombe writes it for p_1 - p_2; swapping the roles gives this form.)
    """
    if table.n == 0:
        raise ValueError("a paired interval needs at least one sample")
    p_ref, p_cand = table.reference_rate, table.candidate_rate
    l_ref, u_ref = wilson_interval(table.both + table.only_reference, table.n, confidence)
    l_cand, u_cand = wilson_interval(table.both + table.only_candidate, table.n, confidence)
    phi = newcombe_phi(table)
    below_c, above_r = p_cand - l_cand, u_ref - p_ref
    above_c, below_r = u_cand - p_cand, p_ref - l_ref
    # max(0, .): |phi| <= 1 makes both radicands >= 0 up to rounding.
    lower = table.difference - math.sqrt(max(0.0, below_c**2 - 2 * phi * below_c * above_r + above_r**2))
    upper = table.difference + math.sqrt(max(0.0, above_c**2 - 2 * phi * above_c * below_r + below_r**2))
    return max(-1.0, lower), min(1.0, upper)


@dataclass(frozen=True)
class McNemarResult:
    """Two-sided McNemar tests of p_cand = p_ref from the discordant counts b and c."""

    exact_p: float  # exact conditional: 2 P(X <= min(b, c)), X ~ Bin(b + c, 1/2), capped at 1
    mid_p: float  # the same minus P(X = min(b, c)) (Lancaster's mid-p)


def mcnemar_test(only_reference: int, only_candidate: int) -> McNemarResult:
    """McNemar's test as the exact binomial test on the discordant pairs.

    Under "same accuracy" each of the b + c discordant samples is equally likely to favour
    either model, so b ~ Binomial(b + c, 1/2) given b + c (McNemar 1947; the exact conditional
    form). Two-sided p: 2 P(X <= min(b, c)), which for p = 1/2 equals scipy.stats.binomtest's
    "sum of outcomes no more likely than the observed one". The mid-p version,
    2 [P(X <= k) - P(X = k)/2] with k = min(b, c), is less conservative; Fagerland, Lydersen &
    Laake, BMC Med Res Methodol 13:91 (2013) recommend it. No discordant pairs: both are 1.
    """
    b, c = _check_count("only_reference", only_reference), _check_count("only_candidate", only_candidate)
    total, k = b + c, min(b, c)
    if total == 0:
        return McNemarResult(1.0, 1.0)
    tail = float(binom.cdf(k, total, 0.5))
    point = float(binom.pmf(k, total, 0.5))
    return McNemarResult(exact_p=min(1.0, 2.0 * tail), mid_p=min(1.0, 2.0 * tail - point))
