"""Summary statistics of raw timing samples, with seeded bootstrap confidence intervals.

All functions take durations in seconds (any unit works, as long as it is one unit) and return
values in the same unit. Percentiles use numpy's default linear interpolation (Hyndman-Fan type 7),
the same as `numpy.percentile` and `scipy.stats.scoreatpercentile`.

The bootstrap is the percentile bootstrap: resample the samples with replacement `resamples`
times, compute the statistic on each resample and take the (1-c)/2 and (1+c)/2 quantiles (for
the median, the resamples' medians are drawn exactly without building the resamples; see
`bootstrap_medians`). It is
seeded, so the same samples always give the same interval (a record's summary recomputed after
loading it from JSON equals the one computed when it was measured).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from quantlens.errors import QuantlensError

DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0

# IQR / 1.349 estimates the standard deviation of normal data; dividing the IQR by it makes the
# robust CV comparable to the classic std/mean CV when the samples are well behaved.
_IQR_PER_SIGMA = 1.3489795003921634
# MAD * 1.4826 estimates the standard deviation of normal data.
_MAD_TO_SIGMA = 1.482602218505602
# Indices per bootstrap-mean chunk: bounds memory at ~16 MB of int64 indices.
_CHUNK_ELEMENTS = 2_000_000

Statistic = Literal["median", "mean"]

# A run is "noisy" when its robust CV exceeds 10 %. Why 10 %: a steady CPU workload of a few
# milliseconds on an idle core spreads by ~1-6 % (robust CV measured on this project's 2-core VM),
# so 10 % leaves room for ordinary jitter; while a machine busy with other work during a sizeable
# share of the run (>= ~25 % of samples slowed, e.g. by time-slicing with another process) makes
# the IQR span both modes and the robust CV jump far past it (0.3-1.0 measured). It is also the
# spread at which pyperf warns that a benchmark "seems unstable" (std > 10 % of mean); robust, so
# that a handful of outliers (a GC pause, one page fault) does not trip it.
NOISY_ROBUST_CV = 0.10

# The robust CV reads as "the spread around a typical sample" only up to about 100 %. Beyond it
# the IQR spans two populations, samples that ran and samples that were stalled (a core taken by
# another process while torch's OpenMP threads wait at a barrier for it, a page-in), and the
# figure becomes the stall's length over the call's: a 0.15 ms call stalled for ~90 ms in over a
# quarter of its samples has a robust CV of ~46 000 %. True, but not a spread anyone can read, so
# above this bound `describe_spread` gives the quartiles instead of the percentage.
ROBUST_CV_READABLE_UP_TO = 1.0


def as_samples(samples: Sequence[float] | np.ndarray, *, what: str = "samples") -> np.ndarray:
    """Samples as a 1-D float64 array; a QuantlensError when empty or not finite."""
    array = np.asarray(samples, dtype=np.float64)
    if array.ndim != 1:
        raise QuantlensError(f"{what} must be a 1-D sequence of numbers, got shape {array.shape}")
    if array.size == 0:
        raise QuantlensError(f"{what} is empty: at least one sample is needed")
    if not np.all(np.isfinite(array)):
        raise QuantlensError(f"{what} contains NaN or infinite values")
    return array


def _check_bootstrap_args(confidence: float, resamples: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise QuantlensError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    if resamples < 1:
        raise QuantlensError(f"resamples must be >= 1, got {resamples}")


def bootstrap_medians(sorted_x: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of `resamples` bootstrap resamples of `sorted_x` (sorted, 1-D), shape (resamples,).

    Exact and O(resamples), without drawing the resamples themselves: a resample index is
    floor(n * U) with U uniform on [0, 1), and floor is monotone, so the k-th smallest index of a
    resample is floor(n * U_(k)), where U_(k), the k-th order statistic of n uniforms, follows
    Beta(k, n + 1 - k). For even n the median also needs U_(k+1): given U_(k) = u, the other
    n - k uniforms are uniform on (u, 1), so U_(k+1) = u + (1 - u) * Beta(1, n - k).
    Same distribution as sorting 2000 resamples of n values, at a ten-thousandth of the cost.
    """
    n = sorted_x.size
    k = (n + 1) // 2  # 1-based rank of the (lower) median
    u_k = rng.beta(k, n + 1 - k, size=resamples)
    low = np.minimum((u_k * n).astype(np.int64), n - 1)
    if n % 2:
        return sorted_x[low]
    u_next = u_k + (1.0 - u_k) * rng.beta(1, n - k, size=resamples)
    high = np.minimum((u_next * n).astype(np.int64), n - 1)
    return 0.5 * (sorted_x[low] + sorted_x[high])


def bootstrap_means(x: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `resamples` bootstrap resamples of `x`, shape (resamples,), drawn in chunks of
    ~2 M indices (16 MB) whatever the sample count."""
    n = x.size
    means = np.empty(resamples)
    rows_per_chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, resamples, rows_per_chunk):
        rows = min(rows_per_chunk, resamples - start)
        idx = rng.integers(0, n, size=(rows, n))  # (rows, n) indices into x
        means[start:start + rows] = x[idx].mean(axis=1)
    return means


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def bootstrap_ci(samples: Sequence[float] | np.ndarray, *, statistic: Statistic = "median",
                 confidence: float = DEFAULT_CONFIDENCE, resamples: int = DEFAULT_RESAMPLES,
                 seed: int = DEFAULT_SEED) -> tuple[float, float]:
    """Seeded percentile-bootstrap confidence interval (low, high) of the median or the mean."""
    _check_bootstrap_args(confidence, resamples)
    if statistic not in ("median", "mean"):
        raise QuantlensError(f"statistic must be 'median' or 'mean', got {statistic!r}")
    x = np.sort(as_samples(samples))
    rng = np.random.default_rng(seed)
    values = bootstrap_means(x, resamples, rng) if statistic == "mean" else bootstrap_medians(x, resamples, rng)
    return _percentile_interval(values, confidence)


@dataclass(frozen=True)
class Summary:
    """Summary of one set of samples (same unit as the samples; CVs are plain fractions).

    `robust_cv` = (IQR / 1.349) / median: the IQR scaled to a normal standard deviation, over the
    median. Unlike `cv` (std / mean) it ignores up to a quarter of outliers on each side, yet it
    grows when the samples split into two modes of similar weight (a machine that is busy half of
    the time), which is the kind of noise that makes a comparison untrustworthy.
    """

    count: int
    mean: float
    median: float
    std: float  # sample standard deviation (ddof=1); NaN for a single sample
    min: float
    max: float
    q1: float  # 25th percentile
    q3: float  # 75th percentile
    iqr: float
    p90: float
    p95: float
    p99: float
    mad: float  # median absolute deviation from the median (unscaled)
    cv: float  # std / mean
    robust_cv: float  # (IQR / 1.349) / median
    mad_cv: float  # 1.4826 * MAD / median
    median_ci: tuple[float, float]
    mean_ci: tuple[float, float]
    confidence: float
    resamples: int
    seed: int

    @property
    def p50(self) -> float:
        return self.median

    @property
    def median_ci_half_width_pct(self) -> float:
        """Half the width of the median's CI as a percentage of the median."""
        return _ratio(self.median_ci[1] - self.median_ci[0], 2.0 * self.median) * 100.0

    def to_dict(self) -> dict[str, object]:
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        fields["p50"] = self.p50
        fields["median_ci_half_width_pct"] = self.median_ci_half_width_pct
        return fields


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator != 0 else math.nan


def _three_digits(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def describe_spread(summary: Summary, *, scale: float = 1e3, unit: str = "ms") -> str:
    """The spread of the samples in words, for notes: "robust CV 4.2%"; past
    ROBUST_CV_READABLE_UP_TO, the quartiles that make the figure (samples times `scale` in `unit`);
    for a median of 0 (calls below the clock's resolution), that the CV is undefined."""
    cv = summary.robust_cv
    if not math.isfinite(cv):
        return "robust CV undefined: the median sample is 0 (below the clock's resolution)"
    if cv <= ROBUST_CV_READABLE_UP_TO:
        return f"robust CV {cv:.1%}"
    return (f"a quarter of the samples took {_three_digits(summary.q3 * scale)} {unit} or more against a median "
            f"of {_three_digits(summary.median * scale)} {unit} ({summary.q3 / summary.median:.0f}x): calls were "
            f"stalled, not merely spread (robust CV over {ROBUST_CV_READABLE_UP_TO:.0%})")


def summarize(samples: Sequence[float] | np.ndarray, *, confidence: float = DEFAULT_CONFIDENCE,
              resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> Summary:
    """Descriptive statistics plus bootstrap CIs of the median and the mean."""
    _check_bootstrap_args(confidence, resamples)
    x = np.sort(as_samples(samples))
    q1, median, q3, p90, p95, p99 = np.percentile(x, [25, 50, 75, 90, 95, 99])
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else math.nan
    mad = float(np.median(np.abs(x - median)))
    iqr = float(q3 - q1)
    rng = np.random.default_rng(seed)
    medians = bootstrap_medians(x, resamples, rng)
    means = bootstrap_means(x, resamples, rng)
    return Summary(
        count=int(x.size), mean=mean, median=float(median), std=std,
        min=float(x[0]), max=float(x[-1]), q1=float(q1), q3=float(q3), iqr=iqr,
        p90=float(p90), p95=float(p95), p99=float(p99), mad=mad,
        cv=_ratio(std, mean), robust_cv=_ratio(iqr / _IQR_PER_SIGMA, float(median)),
        mad_cv=_ratio(_MAD_TO_SIGMA * mad, float(median)),
        median_ci=_percentile_interval(medians, confidence),
        mean_ci=_percentile_interval(means, confidence),
        confidence=confidence, resamples=resamples, seed=seed,
    )


@dataclass(frozen=True)
class Speedup:
    """How many times faster `candidate` is than `baseline`: median(baseline) / median(candidate).

    Above 1 the candidate is faster. `significant` is True when the CI excludes 1.
    """

    baseline: str
    candidate: str
    ratio: float
    ci: tuple[float, float]
    confidence: float

    @property
    def significant(self) -> bool:
        return not (self.ci[0] <= 1.0 <= self.ci[1])

    def to_dict(self) -> dict[str, object]:
        return {"baseline": self.baseline, "candidate": self.candidate, "ratio": self.ratio,
                "ci": self.ci, "confidence": self.confidence, "significant": self.significant}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Speedup:
        """Inverse of `to_dict` ("significant" is derived, and ignored)."""
        try:
            low, high = data["ci"]
            return cls(baseline=data["baseline"], candidate=data["candidate"], ratio=float(data["ratio"]),
                       ci=(float(low), float(high)), confidence=float(data["confidence"]))
        except (KeyError, TypeError, ValueError) as error:
            raise QuantlensError(f"not a speedup: {error}") from None


def speedup(baseline: Sequence[float] | np.ndarray, candidate: Sequence[float] | np.ndarray, *,
            baseline_name: str = "baseline", candidate_name: str = "candidate",
            confidence: float = DEFAULT_CONFIDENCE, resamples: int = DEFAULT_RESAMPLES,
            seed: int = DEFAULT_SEED) -> Speedup:
    """Ratio of medians (baseline / candidate) with a percentile-bootstrap CI.

    The two sample sets are resampled independently: they come from different runs, so there is
    no pairing between their i-th samples.
    """
    _check_bootstrap_args(confidence, resamples)
    a = np.sort(as_samples(baseline, what="baseline samples"))
    b = np.sort(as_samples(candidate, what="candidate samples"))
    if np.median(a) <= 0 or np.median(b) <= 0:
        raise QuantlensError("a speedup needs positive medians on both sides")
    rng = np.random.default_rng(seed)
    ratios = bootstrap_medians(a, resamples, rng) / bootstrap_medians(b, resamples, rng)
    return Speedup(baseline=baseline_name, candidate=candidate_name,
                   ratio=float(np.median(a) / np.median(b)),
                   ci=_percentile_interval(ratios, confidence), confidence=confidence)
