"""Per-stage timing of a multi-step iteration (preprocess / forward / postprocess ...).

The step function receives a `StageTimer` and wraps each stage in `with timer.stage("name"):`.
`time_stages` drives it with the ordinary timed loop, so the total per iteration gets the same
warm-up, stop rule and raw samples as any other benchmark, and each stage gets its own samples,
aligned with the total's (sample i of every stage belongs to sample i of the total):

    def step(timer):
        with timer.stage("preprocess"):
            x = preprocess(images)
        with timer.stage("forward"):
            logits = model(x)
    result = time_stages(step, TimingPlan.iterations(50))
    result.stages["forward"]  # seconds per iteration, one per timed sample

The total includes the timer's own bookkeeping (two clock reads and a dict update per stage,
~0.3 us), so it is meant for stages of tens of microseconds and up, not for nanosecond kernels.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType

from quantlens.bench.plan import DEFAULT_PLAN, TimingPlan
from quantlens.bench.timing import TimingResult, time_callable
from quantlens.errors import QuantlensError

_NS_PER_S = 1_000_000_000


class _Stage:
    """Context manager for one named stage; reused across iterations (no allocation per use)."""

    __slots__ = ("_name", "_timer", "_start")

    def __init__(self, name: str, timer: StageTimer) -> None:
        self._name = name
        self._timer = timer
        self._start = 0

    def __enter__(self) -> None:
        self._start = time.perf_counter_ns()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        timer = self._timer
        if timer._synchronize is not None:
            timer._synchronize()
        elapsed = time.perf_counter_ns() - self._start
        current = timer._current
        current[self._name] = current.get(self._name, 0) + elapsed


class StageTimer:
    """Collects per-stage durations (ns) of each call; `end_call()` closes one call.

    A stage entered twice in one call adds up; a stage skipped in a call counts as 0 for it.
    `synchronize` (e.g. torch.cuda.synchronize) runs at the end of every stage, so that queued
    device work is charged to the stage that queued it. Keeps one small dict per call (warm-up
    included) until the run ends.
    """

    def __init__(self, synchronize: Callable[[], object] | None = None) -> None:
        if synchronize is not None and not callable(synchronize):
            raise QuantlensError(f"synchronize must be callable, got {type(synchronize).__name__}")
        self._synchronize = synchronize
        self._stages: dict[str, _Stage] = {}
        self._current: dict[str, int] = {}
        self.calls: list[dict[str, int]] = []

    def stage(self, name: str) -> _Stage:
        stage = self._stages.get(name)
        if stage is None:
            if not isinstance(name, str) or not name:
                raise QuantlensError(f"a stage name must be a non-empty string, got {name!r}")
            stage = self._stages[name] = _Stage(name, self)
        return stage

    @property
    def stage_names(self) -> tuple[str, ...]:
        """Stages in the order they were first entered."""
        return tuple(self._stages)

    def end_call(self) -> None:
        self.calls.append(self._current)
        self._current = {}


@dataclass(frozen=True)
class StageTimings:
    """The total per iteration (a full `TimingResult`) and, per stage, one duration per timed
    sample in seconds per call (the mean over the sample's inner loops)."""

    total: TimingResult
    stages: Mapping[str, tuple[float, ...]]  # read-only


def time_stages(step: Callable[[StageTimer], object], plan: TimingPlan = DEFAULT_PLAN, *,
                synchronize: Callable[[], object] | None = None) -> StageTimings:
    """Time `step(timer)` as `time_callable` would, and split each sample by stage."""
    if not callable(step):
        raise QuantlensError(f"the step function must be callable, got {type(step).__name__}")
    timer = StageTimer(synchronize)

    def call() -> None:
        step(timer)
        timer.end_call()

    total = time_callable(call, plan, synchronize=synchronize)
    inner = plan.inner_loops
    timed_calls = timer.calls[total.warmup_iterations * inner:]  # warm-up calls come first
    per_call = float(inner * _NS_PER_S)
    stages: dict[str, tuple[float, ...]] = {}
    for name in timer.stage_names:
        stages[name] = tuple(
            sum(c.get(name, 0) for c in timed_calls[i:i + inner]) / per_call
            for i in range(0, len(timed_calls), inner)
        )
    return StageTimings(total=total, stages=MappingProxyType(stages))
