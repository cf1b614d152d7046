"""`BenchmarkRecord`: the immutable result of one benchmark, raw samples included.

A record keeps what is needed to judge and redo the number: every timed sample (seconds per
call), the warm-up samples and whether the timings had settled, the plan that produced them, the
batch size (items per call, for throughput), free-form metadata (backend, precision requested
and precision actually run, device, threads ...), the environment (`capture_environment()`) and
when it ran. Everything derived (summary, throughput) is computed from the samples on demand, so
it can never disagree with them; it is written to JSON for readers, and ignored when reading back.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from quantlens.atomic import write_json
from quantlens.bench.frozen import frozen_json_mapping, thaw
from quantlens.bench.plan import describe_plan
from quantlens.bench.stages import StageTimings
from quantlens.bench.stats import NOISY_ROBUST_CV, Summary, summarize
from quantlens.bench.timing import TimingResult
from quantlens.environment import capture_environment
from quantlens.errors import QuantlensError

SCHEMA = "quantlens.benchmark_record"
SCHEMA_VERSION = 1
UNKNOWN_MACHINE = "unknown"


def iso_utc(unix_seconds: float) -> str:
    """Unix time -> ISO 8601 in UTC with microseconds, e.g. '2026-11-22T10:00:00.000000+00:00'."""
    return _dt.datetime.fromtimestamp(unix_seconds, tz=_dt.timezone.utc).isoformat(timespec="microseconds")


def _durations(values: Sequence[float] | np.ndarray, what: str, *, allow_empty: bool = False) -> tuple[float, ...]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise QuantlensError(f"{what} must be a 1-D sequence of seconds, got shape {array.shape}")
    if array.size == 0 and not allow_empty:
        raise QuantlensError(f"{what} is empty: a benchmark record needs at least one sample")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise QuantlensError(f"{what} must be finite, non-negative durations in seconds")
    return tuple(array.tolist())


def _timestamp(value: str, what: str) -> str:
    try:
        _dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise QuantlensError(f"{what} must be an ISO 8601 timestamp, got {value!r}") from None
    return value


@dataclass(frozen=True, kw_only=True)
class BenchmarkRecord:
    """One benchmark's raw samples and context; frozen all the way down (mappings are read-only
    views, sequences are tuples). Samples are seconds per call; a call handles `batch_size` items.

    `metadata`, `environment` and `timing_plan` must be JSON-serialisable (checked when built);
    non-finite floats in them are written as null, so they do not survive a JSON round trip.
    """

    name: str
    samples_s: tuple[float, ...]
    environment: Mapping[str, Any]
    started_at: str  # ISO 8601, UTC
    finished_at: str  # ISO 8601, UTC
    warmup_samples_s: tuple[float, ...] = ()
    steady_state_reached: bool = False
    inner_loops: int = 1
    batch_size: int = 1
    item_unit: str = "item"
    stages: Mapping[str, tuple[float, ...]] = field(default_factory=lambda: MappingProxyType({}))
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    timing_plan: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        # Normalise inputs into frozen forms; object.__setattr__ because the dataclass is frozen.
        def normalise(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if not isinstance(self.name, str) or not self.name.strip():
            raise QuantlensError(f"a benchmark record needs a non-empty name, got {self.name!r}")
        normalise("samples_s", _durations(self.samples_s, f"samples of {self.name!r}"))
        normalise("warmup_samples_s", _durations(self.warmup_samples_s, f"warm-up samples of {self.name!r}",
                                                 allow_empty=True))
        for what, value in (("batch_size", self.batch_size), ("inner_loops", self.inner_loops)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise QuantlensError(f"{what} must be an integer >= 1, got {value!r}")
        if not isinstance(self.item_unit, str) or not self.item_unit:
            raise QuantlensError(f"item_unit must be a non-empty string, got {self.item_unit!r}")
        normalise("steady_state_reached", bool(self.steady_state_reached))
        normalise("started_at", _timestamp(self.started_at, "started_at"))
        normalise("finished_at", _timestamp(self.finished_at, "finished_at"))
        if not isinstance(self.stages, Mapping):
            raise QuantlensError(f"stages must map stage names to samples, got {type(self.stages).__name__}")
        stages = {}
        for stage, values in self.stages.items():
            stages[str(stage)] = _durations(values, f"samples of stage {stage!r}")
            if len(stages[str(stage)]) != len(self.samples_s):
                raise QuantlensError(f"stage {stage!r} has {len(stages[str(stage)])} samples but the total has "
                                     f"{len(self.samples_s)}: each timed sample needs one duration per stage")
        normalise("stages", MappingProxyType(stages))
        normalise("metadata", frozen_json_mapping(self.metadata, "metadata"))
        normalise("environment", frozen_json_mapping(self.environment, "environment"))
        normalise("timing_plan", frozen_json_mapping(self.timing_plan, "timing_plan"))

    # Frozen + eq would generate a hash over every field, and read-only mappings are unhashable.
    def __hash__(self) -> int:
        return hash((self.name, self.samples_s, self.started_at))

    @classmethod
    def from_timing(cls, name: str, timing: TimingResult | StageTimings, *, batch_size: int = 1,
                    item_unit: str = "item", metadata: Mapping[str, Any] | None = None,
                    environment: Mapping[str, Any] | None = None) -> BenchmarkRecord:
        """Record a timed run; `environment` defaults to `capture_environment()` taken now."""
        stages: Mapping[str, tuple[float, ...]] = {}
        if isinstance(timing, StageTimings):
            stages, timing = timing.stages, timing.total
        if not isinstance(timing, TimingResult):
            raise QuantlensError(f"timing must be a TimingResult or StageTimings, got {type(timing).__name__}")
        return cls(
            name=name, samples_s=timing.samples_s, warmup_samples_s=timing.warmup_samples_s,
            steady_state_reached=timing.steady_state_reached, inner_loops=timing.inner_loops,
            batch_size=batch_size, item_unit=item_unit, stages=stages, metadata=metadata or {},
            timing_plan=describe_plan(timing.plan),
            environment=capture_environment() if environment is None else environment,
            started_at=iso_utc(timing.started_at), finished_at=iso_utc(timing.finished_at),
        )

    # ---- derived values (never stored as fields) -------------------------------------------

    @functools.cached_property
    def summary(self) -> Summary:
        """Statistics of the timed samples (seconds per call), with seeded bootstrap CIs."""
        return summarize(self.samples_s)

    @property
    def samples(self) -> np.ndarray:
        """The timed samples as a read-only float64 array (seconds per call)."""
        array = np.asarray(self.samples_s, dtype=np.float64)
        array.flags.writeable = False
        return array

    @property
    def warmup_iterations(self) -> int:
        return len(self.warmup_samples_s)

    def stage_summary(self, stage: str) -> Summary:
        if stage not in self.stages:
            known = ", ".join(self.stages) or "none"
            raise QuantlensError(f"record {self.name!r} has no stage {stage!r} (stages: {known})")
        return summarize(self.stages[stage])

    @property
    def throughput(self) -> float:
        """Items per second at the median: batch_size / median seconds per call."""
        median = self.summary.median
        return self.batch_size / median if median > 0 else math.inf

    @property
    def throughput_ci(self) -> tuple[float, float]:
        """CI of the throughput, from the median's CI (a slower median bound gives the lower bound)."""
        low, high = self.summary.median_ci
        return (self.batch_size / high if high > 0 else math.inf,
                self.batch_size / low if low > 0 else math.inf)

    @property
    def machine_fingerprint(self) -> str:
        """Hardware identity from the environment, or 'unknown' when the record has none."""
        fingerprint = self.environment.get("machine_fingerprint")
        return fingerprint if isinstance(fingerprint, str) and fingerprint else UNKNOWN_MACHINE

    def is_noisy(self, threshold: float = NOISY_ROBUST_CV) -> bool:
        """True when the samples' robust CV exceeds `threshold` (see stats.NOISY_ROBUST_CV), or is
        undefined (a median of 0: the clock cannot resolve the call, so its spread cannot be vouched for)."""
        return not self.summary.robust_cv <= threshold  # NaN compares False: counted as noisy

    # ---- JSON ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: the fields, then the derived values under 'summary' and 'throughput'."""
        return {
            "schema": SCHEMA, "version": SCHEMA_VERSION,
            "name": self.name, "sample_unit": "s",
            "batch_size": self.batch_size, "item_unit": self.item_unit, "inner_loops": self.inner_loops,
            "warmup_iterations": self.warmup_iterations, "steady_state_reached": self.steady_state_reached,
            "started_at": self.started_at, "finished_at": self.finished_at,
            "metadata": thaw(self.metadata), "timing_plan": thaw(self.timing_plan),
            "environment": thaw(self.environment),
            "summary": self.summary.to_dict(),
            "throughput": {"items_per_s": self.throughput, "ci": self.throughput_ci,
                           "unit": f"{self.item_unit}/s"},
            "stage_summaries": {name: self.stage_summary(name).to_dict() for name in self.stages},
            "samples_s": list(self.samples_s), "warmup_samples_s": list(self.warmup_samples_s),
            "stages": {name: list(values) for name, values in self.stages.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchmarkRecord:
        """Inverse of `to_dict`; derived values in `data` are ignored and recomputed."""
        if not isinstance(data, Mapping) or data.get("schema") != SCHEMA:
            raise QuantlensError(f"not a quantlens benchmark record (expected schema {SCHEMA!r})")
        if data.get("version") != SCHEMA_VERSION:
            raise QuantlensError(f"benchmark record version {data.get('version')!r} is not supported "
                                 f"(this quantlens reads version {SCHEMA_VERSION})")
        try:
            return cls(
                name=data["name"], samples_s=data["samples_s"], environment=data["environment"],
                started_at=data["started_at"], finished_at=data["finished_at"],
                warmup_samples_s=data.get("warmup_samples_s", ()),
                steady_state_reached=data.get("steady_state_reached", False),
                inner_loops=data.get("inner_loops", 1), batch_size=data.get("batch_size", 1),
                item_unit=data.get("item_unit", "item"), stages=data.get("stages", {}),
                metadata=data.get("metadata", {}), timing_plan=data.get("timing_plan", {}),
            )
        except KeyError as missing:
            raise QuantlensError(f"benchmark record is missing the field {missing}") from None

    def save(self, path: str | Path) -> Path:
        """Write the record as JSON, atomically (a reader never sees half a file)."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> BenchmarkRecord:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise QuantlensError(f"benchmark record {path} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise QuantlensError(f"cannot read benchmark record {path}: {error}") from None
        return cls.from_dict(data)
