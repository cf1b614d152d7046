"""The timed loop: warm-up (by count, then until steady), then samples until the stop rule holds.

Each sample is timed on its own with `time.perf_counter_ns` (monotonic, integer nanoseconds, no
float rounding), so the raw samples keep the run's full distribution: outliers, drift, modes.
Inside the timed region there is nothing but the call(s) and, when given, `synchronize()`; all
bookkeeping (appending, deadline checks, steady-state tests) happens between samples, where it
adds to the run's duration but not to any sample. On this project's 2-core VM timing an empty
callable costs ~0.1 us per sample (see benchmarks/bench_harness.py), far under the 2 us budget.

Every function that reads a clock takes it as an optional `clock` (integer nanoseconds, default
`time.perf_counter_ns`; `time_callable` also takes `wall_clock`, default `time.time`), so that a
test can drive the loops with a scripted clock instead of the machine's load.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from quantlens.bench.plan import DEFAULT_PLAN, MAX_INNER_LOOPS, FixedIterations, TimingPlan, WarmupPolicy
from quantlens.errors import QuantlensError

_NS_PER_S = 1_000_000_000

# A monotonic clock in integer nanoseconds (time.perf_counter_ns, or a test's scripted clock).
Clock = Callable[[], int]


@dataclass(frozen=True)
class TimingResult:
    """Raw outcome of one timed run. Durations in seconds per call (a sample of `inner_loops`
    calls is stored as its mean per call); wall-clock times in Unix seconds."""

    samples_s: tuple[float, ...]
    warmup_samples_s: tuple[float, ...]
    steady_state_reached: bool  # False when the warm-up hit a cap, or was count-only (plan says which)
    plan: TimingPlan
    started_at: float  # Unix time when the warm-up began
    finished_at: float  # Unix time when the last sample ended

    @property
    def warmup_iterations(self) -> int:
        return len(self.warmup_samples_s)

    @property
    def inner_loops(self) -> int:
        return self.plan.inner_loops


def make_sampler(fn: Callable[[], object], inner_loops: int,
                 synchronize: Callable[[], object] | None, *,
                 clock: Clock = time.perf_counter_ns) -> Callable[[], int]:
    """A closure that times one sample (`inner_loops` calls, then `synchronize()`) with `clock`
    and returns its duration in nanoseconds; the building block of every loop in this package.

    One variant per case so that the common one (one call, no synchronize) has nothing in its
    timed region but `fn()`: no loop, no branch.
    """
    if inner_loops == 1 and synchronize is None:
        def sample() -> int:
            start = clock()
            fn()
            return clock() - start
    elif inner_loops == 1:
        sync = synchronize

        def sample() -> int:
            start = clock()
            fn()
            sync()
            return clock() - start
    else:
        loops = range(inner_loops)
        sync_or_none = synchronize

        def sample() -> int:
            start = clock()
            for _ in loops:
                fn()
            if sync_or_none is not None:
                sync_or_none()
            return clock() - start
    return sample


def windows_settled(samples: Sequence[float], window: int, tolerance: float) -> bool:
    """True when the median of the last `window` samples is within `tolerance` (relative) of the
    median of the `window` samples before them."""
    if len(samples) < 2 * window:
        return False
    latest = statistics.median(samples[-window:])
    previous = statistics.median(samples[-2 * window:-window])
    return abs(latest - previous) <= tolerance * previous


def warm_up(sample: Callable[[], int], policy: WarmupPolicy, *,
            clock: Clock = time.perf_counter_ns) -> tuple[list[int], bool]:
    """Run `sample` as `policy` says; return the warm-up samples (ns) and whether steady state
    was reached (always False for a count-only policy). The count-based part always runs in
    full; the caps bound only the steady-state extension (`policy.max_seconds` read on `clock`)."""
    samples = [sample() for _ in range(policy.iterations)]
    if not policy.until_steady:
        return samples, False
    deadline = clock() + int(policy.max_seconds * _NS_PER_S)
    while True:
        if windows_settled(samples, policy.window, policy.tolerance):
            return samples, True
        if len(samples) >= policy.max_iterations or clock() >= deadline:
            return samples, False
        samples.append(sample())


def _timed_phase(sample: Callable[[], int], plan: TimingPlan, clock: Clock) -> list[int]:
    stop = plan.stop
    if isinstance(stop, FixedIterations):
        return [sample() for _ in range(stop.count)]
    deadline = clock() + int(stop.seconds * _NS_PER_S)
    samples: list[int] = []
    append = samples.append
    while len(samples) < stop.max_iterations:
        append(sample())
        if len(samples) >= stop.min_iterations and clock() >= deadline:
            break
    return samples


def _check_callable(obj: object, what: str) -> None:
    if not callable(obj):
        raise QuantlensError(f"{what} must be callable, got {type(obj).__name__}")


def time_callable(fn: Callable[[], object], plan: TimingPlan = DEFAULT_PLAN, *,
                  synchronize: Callable[[], object] | None = None, clock: Clock = time.perf_counter_ns,
                  wall_clock: Callable[[], float] = time.time) -> TimingResult:
    """Warm up `fn`, then time it as `plan` says (default: 100 samples after a steady-state
    warm-up). `synchronize()` (e.g. torch.cuda.synchronize) is called at the end of every
    sample, inside the timed region, so that queued asynchronous work is counted.

    `clock` (ns) times the samples and the duration caps; `wall_clock` (Unix seconds) gives
    `started_at` / `finished_at`. Both default to the real clocks.

    Exceptions raised by `fn` propagate unchanged: a failing callable is not a timing.
    """
    _check_callable(fn, "the timed function")
    if synchronize is not None:
        _check_callable(synchronize, "synchronize")
    if not isinstance(plan, TimingPlan):
        raise QuantlensError(f"plan must be a TimingPlan, got {type(plan).__name__}")
    sample = make_sampler(fn, plan.inner_loops, synchronize, clock=clock)
    started_at = wall_clock()
    warmup_ns, steady = warm_up(sample, plan.warmup, clock=clock)
    samples_ns = _timed_phase(sample, plan, clock)
    finished_at = wall_clock()
    per_call = float(plan.inner_loops * _NS_PER_S)
    return TimingResult(
        samples_s=tuple(ns / per_call for ns in samples_ns),
        warmup_samples_s=tuple(ns / per_call for ns in warmup_ns),
        steady_state_reached=steady, plan=plan, started_at=started_at, finished_at=finished_at,
    )


def choose_inner_loops(fn: Callable[[], object], *, min_sample_seconds: float = 50e-6,
                       max_inner_loops: int = 1_000_000,
                       synchronize: Callable[[], object] | None = None,
                       clock: Clock = time.perf_counter_ns) -> int:
    """Smallest number of back-to-back calls whose sample lasts `min_sample_seconds` on `clock`.

    50 us is ~500x the clock's own cost here, so the clock adds < 0.2 % to a sample. Calls `fn`
    a few times (doubling the count) while it searches; run it after the callable is warm.
    """
    _check_callable(fn, "the timed function")
    if not 0.0 < min_sample_seconds <= 1.0:
        raise QuantlensError(f"min_sample_seconds must be in (0, 1], got {min_sample_seconds}")
    if not 1 <= max_inner_loops <= MAX_INNER_LOOPS:
        raise QuantlensError(f"max_inner_loops must be in [1, {MAX_INNER_LOOPS}], got {max_inner_loops}")
    target_ns = min_sample_seconds * _NS_PER_S
    inner = 1
    while inner < max_inner_loops:
        elapsed_ns = make_sampler(fn, inner, synchronize, clock=clock)()
        if elapsed_ns >= target_ns:
            return inner
        # Jump straight to the estimate (with 20 % margin), but at least double, at most x100.
        estimate = math.ceil(1.2 * inner * target_ns / max(elapsed_ns, 1))
        inner = min(max_inner_loops, max(2 * inner, min(estimate, 100 * inner)))
    return max_inner_loops


def _empty() -> None:
    return None


def empty_call_overhead(samples: int = 100_000) -> TimingResult:
    """Time an empty callable: each sample is what the harness itself adds to a measurement
    (two clock reads and one Python call), in seconds."""
    plan = TimingPlan(FixedIterations(samples), WarmupPolicy.fixed(1000))
    return time_callable(_empty, plan)
