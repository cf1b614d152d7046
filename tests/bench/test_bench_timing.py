"""The timed loop, warm-up and steady-state detection, stop rules, hooks, stage timer."""

from __future__ import annotations

import time

import pytest

from quantlens.bench.plan import FixedIterations, MinDuration, TimingPlan, WarmupPolicy
from quantlens.bench.stages import StageTimer, time_stages
from quantlens.bench.timing import (
    choose_inner_loops,
    empty_call_overhead,
    time_callable,
    warm_up,
    windows_settled,
)
from quantlens.errors import QuantlensError


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def test_fixed_iterations_and_fixed_warmup_give_exact_counts():
    fn = Counter()
    result = time_callable(fn, TimingPlan.iterations(37, warmup=WarmupPolicy.fixed(4)))
    assert len(result.samples_s) == 37
    assert result.warmup_iterations == 4
    assert not result.steady_state_reached  # count-only warm-up does not check
    assert fn.calls == 41
    assert all(s >= 0 for s in result.samples_s)
    assert result.started_at <= result.finished_at


def test_inner_loops_call_the_function_that_many_times_per_sample():
    fn = Counter()
    result = time_callable(fn, TimingPlan.iterations(10, warmup=WarmupPolicy.fixed(2), inner_loops=7))
    assert fn.calls == (10 + 2) * 7
    assert len(result.samples_s) == 10
    assert result.inner_loops == 7


def test_synchronize_runs_once_per_sample_after_the_calls():
    events: list[str] = []
    plan = TimingPlan.iterations(5, warmup=WarmupPolicy.fixed(1), inner_loops=2)
    time_callable(lambda: events.append("call"), plan, synchronize=lambda: events.append("sync"))
    assert events == ["call", "call", "sync"] * 6


def test_min_duration_runs_at_least_that_long_and_at_least_min_iterations():
    plan = TimingPlan(MinDuration(seconds=0.2, min_iterations=5), WarmupPolicy.fixed(0))
    result = time_callable(lambda: time.sleep(0.001), plan)
    assert result.finished_at - result.started_at >= 0.2 * 0.99  # wall clock vs perf counter
    assert len(result.samples_s) >= 5
    slow = time_callable(lambda: time.sleep(0.01), TimingPlan(MinDuration(0.001, min_iterations=4),
                                                               WarmupPolicy.fixed(0)))
    assert len(slow.samples_s) == 4


def test_min_duration_is_capped_by_max_iterations():
    plan = TimingPlan(MinDuration(seconds=3600.0, min_iterations=1, max_iterations=50), WarmupPolicy.fixed(0))
    assert len(time_callable(Counter(), plan).samples_s) == 50


def test_windows_settled_compares_medians_of_the_last_two_windows():
    assert not windows_settled([1.0] * 9, window=5, tolerance=0.05)  # fewer than two windows
    assert windows_settled([1.0] * 10, window=5, tolerance=0.05)
    assert not windows_settled([2.0] * 5 + [1.0] * 5, window=5, tolerance=0.05)
    assert windows_settled([1.0, 1.0, 9.0, 1.0, 1.0, 1.0, 1.0, 1.0, 7.0, 1.02], window=5, tolerance=0.05)


def test_warm_up_extends_until_synthetic_timings_settle():
    # 12 shrinking samples (a cold cache, a JIT, lazy allocation), then a steady 100 ns.
    timings = iter([2400 - 200 * i for i in range(12)] + [100] * 1000)
    samples, steady = warm_up(lambda: next(timings), WarmupPolicy(iterations=1, window=5, tolerance=0.05))
    assert steady
    # Settled once the last window is all steady and the one before is mostly steady (its
    # median is then 100): 12 slow + 5 + 3 samples.
    assert len(samples) == 12 + 5 + 3


def test_warm_up_gives_up_at_its_iteration_cap():
    growing = iter(range(100, 10_000_000, 100))  # never settles: every window is slower
    samples, steady = warm_up(lambda: next(growing), WarmupPolicy(window=3, max_iterations=40))
    assert not steady
    assert len(samples) == 40


def test_warm_up_gives_up_at_its_time_cap():
    growing = iter(range(100, 10_000_000, 100))

    def slow_sample() -> int:
        time.sleep(0.002)
        return next(growing)

    samples, steady = warm_up(slow_sample, WarmupPolicy(window=3, max_iterations=100_000, max_seconds=0.05))
    assert not steady
    assert len(samples) < 100  # ~25 at 2 ms each; fewer when the machine stalls


def test_steady_state_warm_up_runs_past_slow_first_calls():
    """A callable whose first 10 calls sleep 20, 18, ... 2 ms, then does a little steady work."""
    calls = Counter()

    def settling() -> None:
        calls()
        if calls.calls <= 10:
            time.sleep(0.002 * (11 - calls.calls))
        else:
            sum(range(2000))

    policy = WarmupPolicy(iterations=1, window=5, tolerance=0.2, max_iterations=5000, max_seconds=20.0)
    result = time_callable(settling, TimingPlan.iterations(20, warmup=policy))
    assert result.warmup_iterations >= 10 + 5  # past the slow calls, and a full window beyond them
    assert result.steady_state_reached
    assert calls.calls == result.warmup_iterations + 20


def test_exceptions_from_the_timed_function_propagate():
    def broken() -> None:
        raise RuntimeError("kernel failed")

    with pytest.raises(RuntimeError, match="kernel failed"):
        time_callable(broken, TimingPlan.iterations(3))


@pytest.mark.parametrize("build", [
    lambda: FixedIterations(0),
    lambda: FixedIterations(True),
    lambda: FixedIterations(2.5),
    lambda: MinDuration(0.0),
    lambda: MinDuration(1e9),
    lambda: MinDuration(1.0, min_iterations=0),
    lambda: MinDuration(1.0, min_iterations=10, max_iterations=5),
    lambda: WarmupPolicy(iterations=-1),
    lambda: WarmupPolicy(window=0),
    lambda: WarmupPolicy(tolerance=0.0),
    lambda: WarmupPolicy(tolerance=1.5),
    lambda: WarmupPolicy(iterations=10, max_iterations=5),
    lambda: WarmupPolicy(max_seconds=0),
    lambda: TimingPlan(inner_loops=0),
    lambda: TimingPlan(stop=100),
])
def test_bad_plans_fail_when_built(build):
    with pytest.raises(QuantlensError):
        build()


def test_bad_callables_are_refused():
    with pytest.raises(QuantlensError, match="callable"):
        time_callable(42)
    with pytest.raises(QuantlensError, match="synchronize"):
        time_callable(Counter(), synchronize="cuda")
    with pytest.raises(QuantlensError, match="TimingPlan"):
        time_callable(Counter(), plan=100)


def test_choose_inner_loops_batches_fast_calls_only():
    assert choose_inner_loops(Counter(), min_sample_seconds=50e-6) > 1
    assert choose_inner_loops(lambda: time.sleep(0.001), min_sample_seconds=50e-6) == 1
    assert choose_inner_loops(Counter(), min_sample_seconds=1.0, max_inner_loops=64) == 64
    with pytest.raises(QuantlensError):
        choose_inner_loops(Counter(), min_sample_seconds=0.0)


def test_empty_call_overhead_returns_raw_samples():
    result = empty_call_overhead(samples=1000)
    assert len(result.samples_s) == 1000
    assert result.warmup_iterations == 1000


def test_stage_timer_splits_each_timed_sample_by_stage():
    calls = Counter()

    def step(timer: StageTimer) -> None:
        calls()
        with timer.stage("preprocess"):
            sum(range(300))
        with timer.stage("forward"):
            sum(range(1000))
        with timer.stage("forward"):  # a stage entered twice adds up
            sum(range(100))
        if calls.calls % 2:
            with timer.stage("postprocess"):  # a skipped stage counts 0 for that call
                pass

    plan = TimingPlan.iterations(12, warmup=WarmupPolicy.fixed(3), inner_loops=2)
    result = time_stages(step, plan)
    assert calls.calls == (3 + 12) * 2
    assert list(result.stages) == ["preprocess", "forward", "postprocess"]
    for stage_samples in result.stages.values():
        assert len(stage_samples) == 12
    for i, total in enumerate(result.total.samples_s):
        # The stages run inside the total's timed region, so they can never add up to more.
        assert sum(samples[i] for samples in result.stages.values()) <= total
    with pytest.raises(TypeError):
        result.stages["new"] = ()


def test_stage_names_must_be_strings():
    timer = StageTimer()
    with pytest.raises(QuantlensError, match="stage name"):
        timer.stage("")
