"""What a timed run does: how it warms up, when it stops, how many calls make one sample.

Frozen and validated when built, so a bad plan fails before anything runs. Caps keep a typo
(`seconds=3600000`) from holding a machine for days or filling memory with samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quantlens.errors import QuantlensError

# A sample is one Python int while running and one float in a record; a million of them is
# ~40 MB in flight, beyond which percentiles and CIs stop improving in any useful way.
MAX_SAMPLES = 1_000_000
MAX_DURATION_S = 3600.0
MAX_INNER_LOOPS = 10_000_000
MAX_WARMUP_ITERATIONS = 1_000_000
MAX_WARMUP_SECONDS = 600.0


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise QuantlensError(message)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class FixedIterations:
    """Stop after exactly `count` timed samples."""

    count: int = 100

    def __post_init__(self) -> None:
        _require(_is_int(self.count) and 1 <= self.count <= MAX_SAMPLES,
                 f"iterations must be an integer in [1, {MAX_SAMPLES}], got {self.count!r}")


@dataclass(frozen=True)
class MinDuration:
    """Keep taking samples until `seconds` of wall time have passed in the timed phase.

    At least `min_iterations` samples are taken however slow the callable is (so the statistics
    have something to work on), and at most `max_iterations` however fast it is.
    """

    seconds: float = 1.0
    min_iterations: int = 10
    max_iterations: int = MAX_SAMPLES

    def __post_init__(self) -> None:
        _require(isinstance(self.seconds, (int, float)) and 0.0 < self.seconds <= MAX_DURATION_S,
                 f"min duration must be in (0, {MAX_DURATION_S}] seconds, got {self.seconds!r}")
        _require(_is_int(self.min_iterations) and self.min_iterations >= 1,
                 f"min_iterations must be an integer >= 1, got {self.min_iterations!r}")
        _require(_is_int(self.max_iterations) and self.min_iterations <= self.max_iterations <= MAX_SAMPLES,
                 f"max_iterations must be an integer in [min_iterations, {MAX_SAMPLES}], "
                 f"got {self.max_iterations!r}")


StopRule = FixedIterations | MinDuration


@dataclass(frozen=True)
class WarmupPolicy:
    """Warm-up by count, then (optionally) until the timings settle.

    First `iterations` calls always run. With `until_steady`, warm-up goes on until the median of
    the last `window` samples is within `tolerance` (relative) of the median of the `window`
    samples before it, or a cap is hit: `max_iterations` warm-up samples or `max_seconds` of warm-up.
    Medians of windows, not single samples, so that one slow outlier neither stops nor prolongs it.
    Window 5 / tolerance 5 % settles in ~10-20 calls for a warm, steady callable on a noisy VM.
    """

    iterations: int = 1
    until_steady: bool = True
    window: int = 5
    tolerance: float = 0.05
    max_iterations: int = 1000
    max_seconds: float = 30.0

    def __post_init__(self) -> None:
        _require(_is_int(self.iterations) and 0 <= self.iterations <= MAX_WARMUP_ITERATIONS,
                 f"warm-up iterations must be an integer in [0, {MAX_WARMUP_ITERATIONS}], "
                 f"got {self.iterations!r}")
        _require(_is_int(self.window) and self.window >= 1,
                 f"warm-up window must be an integer >= 1, got {self.window!r}")
        _require(isinstance(self.tolerance, (int, float)) and 0.0 < self.tolerance < 1.0,
                 f"warm-up tolerance must be in (0, 1), got {self.tolerance!r}")
        _require(_is_int(self.max_iterations) and self.iterations <= self.max_iterations <= MAX_WARMUP_ITERATIONS,
                 f"warm-up max_iterations must be an integer in [iterations, {MAX_WARMUP_ITERATIONS}], "
                 f"got {self.max_iterations!r}")
        _require(isinstance(self.max_seconds, (int, float)) and 0.0 < self.max_seconds <= MAX_WARMUP_SECONDS,
                 f"warm-up max_seconds must be in (0, {MAX_WARMUP_SECONDS}], got {self.max_seconds!r}")

    @classmethod
    def fixed(cls, iterations: int) -> WarmupPolicy:
        """Exactly `iterations` warm-up calls, no steady-state detection."""
        return cls(iterations=iterations, until_steady=False, max_iterations=max(iterations, 1))


@dataclass(frozen=True)
class TimingPlan:
    """Warm-up policy, stop rule, and `inner_loops` calls per sample.

    With `inner_loops` > 1 one sample times that many back-to-back calls and stores their mean:
    for callables of a few microseconds, where the clock's own cost (~0.1 us) would otherwise be
    a visible share of each sample. See `timing.choose_inner_loops`.
    """

    stop: StopRule = field(default_factory=FixedIterations)
    warmup: WarmupPolicy = field(default_factory=WarmupPolicy)
    inner_loops: int = 1

    def __post_init__(self) -> None:
        _require(isinstance(self.stop, (FixedIterations, MinDuration)),
                 f"stop must be FixedIterations or MinDuration, got {type(self.stop).__name__}")
        _require(isinstance(self.warmup, WarmupPolicy),
                 f"warmup must be a WarmupPolicy, got {type(self.warmup).__name__}")
        _require(_is_int(self.inner_loops) and 1 <= self.inner_loops <= MAX_INNER_LOOPS,
                 f"inner_loops must be an integer in [1, {MAX_INNER_LOOPS}], got {self.inner_loops!r}")

    @classmethod
    def iterations(cls, count: int, *, warmup: WarmupPolicy | None = None, inner_loops: int = 1) -> TimingPlan:
        """Plan that stops after `count` samples."""
        return cls(FixedIterations(count), warmup or WarmupPolicy(), inner_loops)

    @classmethod
    def duration(cls, seconds: float, *, min_iterations: int = 10, max_iterations: int = MAX_SAMPLES,
                 warmup: WarmupPolicy | None = None, inner_loops: int = 1) -> TimingPlan:
        """Plan that samples for at least `seconds` (and at least `min_iterations` samples)."""
        return cls(MinDuration(seconds, min_iterations, max_iterations), warmup or WarmupPolicy(), inner_loops)


# 100 samples after a warm-up of at least one call that goes on until the timings settle.
DEFAULT_PLAN = TimingPlan()


def describe_plan(plan: TimingPlan) -> dict[str, object]:
    """Plain-JSON description of a plan, stored in each record so a run can be repeated."""
    stop = plan.stop
    if isinstance(stop, FixedIterations):
        stop_dict: dict[str, object] = {"rule": "fixed_iterations", "count": stop.count}
    else:
        stop_dict = {"rule": "min_duration", "seconds": stop.seconds,
                     "min_iterations": stop.min_iterations, "max_iterations": stop.max_iterations}
    warmup = plan.warmup
    return {
        "stop": stop_dict,
        "warmup": {"iterations": warmup.iterations, "until_steady": warmup.until_steady,
                   "window": warmup.window, "tolerance": warmup.tolerance,
                   "max_iterations": warmup.max_iterations, "max_seconds": warmup.max_seconds},
        "inner_loops": plan.inner_loops,
    }
