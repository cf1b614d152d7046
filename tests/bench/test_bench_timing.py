"""The timed loop, warm-up and steady-state detection, stop rules, hooks, stage timer.

The loops' logic (stop rules, duration caps, steady-state detection, inner-loop search) is tested
on a `FakeClock` that moves only when the code under test says a call took so long, so the
outcome is exact and independent of the machine's load. The tests that run the real clock assert
only what holds under any load: counts, order, non-negative durations.
"""

from __future__ import annotations

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


class FakeClock:
    """A monotonic clock in integer nanoseconds that moves only by `advance`: a scripted call
    "takes" exactly the time it advances the clock by, whatever else the machine is doing."""

    def __init__(self, start_ns: int = 1_000 * 1_000_000_000) -> None:
        self.now = start_ns

    def __call__(self) -> int:
        return self.now

    def advance(self, ns: int) -> None:
        self.now += ns

    def wall(self) -> float:
        """The same clock as Unix seconds, for `time_callable(wall_clock=...)`."""
        return self.now / 1e9

    def call_taking(self, ns: int):
        """A callable that takes `ns` nanoseconds on this clock."""
        return lambda: self.advance(ns)


def test_fixed_iterations_and_fixed_warmup_give_exact_counts():
    fn = Counter()
    wall = iter([100.0, 105.0])  # read once before the warm-up, once after the last sample
    result = time_callable(fn, TimingPlan.iterations(37, warmup=WarmupPolicy.fixed(4)),
                           wall_clock=lambda: next(wall))
    assert len(result.samples_s) == 37
    assert result.warmup_iterations == 4
    assert not result.steady_state_reached  # count-only warm-up does not check
    assert fn.calls == 41
    assert all(s >= 0 for s in result.samples_s)  # real clock: only what holds under any load
    assert (result.started_at, result.finished_at) == (100.0, 105.0)


def test_samples_are_per_call_and_include_synchronize():
    clock = FakeClock()
    plan = TimingPlan.iterations(5, warmup=WarmupPolicy.fixed(2), inner_loops=4)
    result = time_callable(clock.call_taking(300), plan, clock=clock,
                           synchronize=clock.call_taking(200), wall_clock=clock.wall)
    # A sample is 4 calls of 300 ns and one synchronize of 200 ns, stored per call: 350 ns.
    assert result.samples_s == pytest.approx([350e-9] * 5, rel=1e-12)
    assert result.warmup_samples_s == pytest.approx([350e-9] * 2, rel=1e-12)
    assert result.finished_at - result.started_at == pytest.approx(7 * 1400e-9, rel=1e-6)


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


def test_min_duration_runs_until_its_deadline_and_at_least_min_iterations():
    clock = FakeClock()
    plan = TimingPlan(MinDuration(seconds=0.2, min_iterations=5), WarmupPolicy.fixed(0))
    result = time_callable(clock.call_taking(1_000_000), plan, clock=clock, wall_clock=clock.wall)
    # 1 ms calls: the 200th sample ends exactly on the 0.2 s deadline, and the loop stops there.
    assert len(result.samples_s) == 200
    assert set(result.samples_s) == {1e-3}
    assert result.finished_at - result.started_at == pytest.approx(0.2, rel=1e-9)
    # 10 ms calls: the deadline (1 ms) passes during the first sample; min_iterations still holds.
    slow = time_callable(clock.call_taking(10_000_000), TimingPlan(MinDuration(0.001, min_iterations=4),
                                                                     WarmupPolicy.fixed(0)), clock=clock)
    assert len(slow.samples_s) == 4


def test_min_duration_on_the_real_clock():
    """Smoke test on the real clock: only what holds however loaded the machine is."""
    plan = TimingPlan(MinDuration(seconds=0.001, min_iterations=3, max_iterations=10_000), WarmupPolicy.fixed(1))
    result = time_callable(Counter(), plan)
    assert 3 <= len(result.samples_s) <= 10_000
    assert all(s >= 0 for s in result.samples_s)


def test_min_duration_is_capped_by_max_iterations():
    plan = TimingPlan(MinDuration(seconds=3600.0, min_iterations=1, max_iterations=50), WarmupPolicy.fixed(0))
    frozen = FakeClock()  # never reaches the deadline: only the cap stops the run
    assert len(time_callable(Counter(), plan, clock=frozen).samples_s) == 50


def test_windows_settled_compares_medians_of_the_last_two_windows():
    assert not windows_settled([1.0] * 9, window=5, tolerance=0.05)  # fewer than two windows
    assert windows_settled([1.0] * 10, window=5, tolerance=0.05)
    assert not windows_settled([2.0] * 5 + [1.0] * 5, window=5, tolerance=0.05)
    assert windows_settled([1.0, 1.0, 9.0, 1.0, 1.0, 1.0, 1.0, 1.0, 7.0, 1.02], window=5, tolerance=0.05)


def test_warm_up_extends_until_synthetic_timings_settle():
    # 12 shrinking samples (a cold cache, a JIT, lazy allocation), then a steady 100 ns.
    timings = iter([2400 - 200 * i for i in range(12)] + [100] * 1000)
    samples, steady = warm_up(lambda: next(timings), WarmupPolicy(iterations=1, window=5, tolerance=0.05),
                              clock=FakeClock())  # frozen: the time cap plays no part
    assert steady
    # Settled once the last window is all steady and the one before is mostly steady (its
    # median is then 100): 12 slow + 5 + 3 samples.
    assert len(samples) == 12 + 5 + 3


def test_warm_up_gives_up_at_its_iteration_cap():
    growing = iter(range(100, 10_000_000, 100))  # never settles: every window is slower
    samples, steady = warm_up(lambda: next(growing), WarmupPolicy(window=3, max_iterations=40),
                              clock=FakeClock())  # frozen: only the iteration cap can stop it
    assert not steady
    assert len(samples) == 40


def test_warm_up_gives_up_at_its_time_cap():
    clock = FakeClock()
    growing = iter(range(100, 10_000_000, 100))  # never settles

    def slow_sample() -> int:
        clock.advance(2_000_000)  # each sample takes 2 ms on the warm-up's clock
        return next(growing)

    samples, steady = warm_up(slow_sample, WarmupPolicy(window=3, max_iterations=100_000, max_seconds=0.05),
                              clock=clock)
    assert not steady
    # The count-based sample runs first; the 50 ms cap then starts and allows exactly 25 more.
    assert len(samples) == 1 + 25


def test_steady_state_warm_up_runs_past_slow_first_calls():
    """A callable whose first 10 calls take 20, 18, ... 2 ms, then a steady 10 us."""
    clock = FakeClock()
    calls = Counter()

    def settling() -> None:
        calls()
        clock.advance(2_000_000 * (11 - calls.calls) if calls.calls <= 10 else 10_000)

    policy = WarmupPolicy(iterations=1, window=5, tolerance=0.2, max_iterations=5000, max_seconds=20.0)
    result = time_callable(settling, TimingPlan.iterations(20, warmup=policy), clock=clock)
    # Settled once the last window is all steady and the one before is mostly steady (3 of 5,
    # so its median is 10 us): 10 slow + 5 + 3 samples.
    assert result.warmup_iterations == 10 + 5 + 3
    assert result.steady_state_reached
    assert result.warmup_samples_s[:10] == pytest.approx([0.002 * (10 - i) for i in range(10)], rel=1e-12)
    assert result.samples_s == pytest.approx([10e-6] * 20, rel=1e-12)
    assert calls.calls == result.warmup_iterations + 20


def test_steady_state_warm_up_gives_up_at_its_time_cap_inside_time_callable():
    clock = FakeClock()
    calls = Counter()

    def ever_slower() -> None:
        calls()
        clock.advance(1_000_000 * calls.calls)  # call i takes i ms: never settles

    policy = WarmupPolicy(iterations=2, window=3, max_iterations=1000, max_seconds=0.1)
    result = time_callable(ever_slower, TimingPlan.iterations(3, warmup=policy), clock=clock)
    # The cap starts after the 2 counted calls (1 + 2 ms); calls 3..14 then take 3 + ... + 14 =
    # 102 ms, the first time the 100 ms cap is passed.
    assert not result.steady_state_reached
    assert result.warmup_iterations == 14
    assert calls.calls == 14 + 3


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
    clock = FakeClock()
    # 100 ns calls, 50 us target: 1 call (100 ns; the estimate of 600 is capped at x100) -> 100
    # calls (10 us) -> 1.2 * 100 * 50 / 10 = 600 calls (60 us), the first sample long enough.
    assert choose_inner_loops(clock.call_taking(100), min_sample_seconds=50e-6, clock=clock) == 600
    assert choose_inner_loops(clock.call_taking(1_000_000), min_sample_seconds=50e-6, clock=clock) == 1
    assert choose_inner_loops(clock.call_taking(100), min_sample_seconds=1.0, max_inner_loops=64,
                              clock=clock) == 64
    with pytest.raises(QuantlensError):
        choose_inner_loops(Counter(), min_sample_seconds=0.0)


def test_choose_inner_loops_grows_at_most_a_hundredfold_per_step_and_counts_synchronize():
    clock = FakeClock()
    fn = Counter()

    def one_ns_call() -> None:
        fn()
        clock.advance(1)

    # 1 -> 100 -> 10 000 (each capped at x100) -> 60 000 (the estimate, 1.2 x 50 000 ns / 1 ns).
    assert choose_inner_loops(one_ns_call, min_sample_seconds=50e-6, clock=clock) == 60_000
    assert fn.calls == 1 + 100 + 10_000 + 60_000
    # synchronize is inside the sample: 10 us of calls + 40 us of synchronize reach 50 us at once.
    assert choose_inner_loops(clock.call_taking(10_000), min_sample_seconds=50e-6, clock=clock,
                              synchronize=clock.call_taking(40_000)) == 1


def test_choose_inner_loops_on_the_real_clock():
    """Smoke test on the real clock: the answer depends on the machine, its bounds do not."""
    assert 1 <= choose_inner_loops(Counter(), min_sample_seconds=50e-6, max_inner_loops=10_000) <= 10_000


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
