"""Typed results of a benchmark session, one per job: a backend's outcome, one batch size's timing.

Every type is frozen (mappings are read-only views), writes plain JSON with `to_dict` and reads it
back with `from_dict` into an equal object. Values derived from others (speedups, noise flags,
summaries, throughput) are computed on demand; `to_dict` writes them for readers of the JSON and
`from_dict` ignores them, so they can never disagree with what they are derived from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from quantlens.backends.base import RunnerInfo
from quantlens.bench.compare import Comparison
from quantlens.bench.memory import CudaPeak, PeakRss
from quantlens.bench.notes import BenchmarkNote
from quantlens.bench.record import BenchmarkRecord
from quantlens.bench.stats import Speedup
from quantlens.errors import QuantlensError


def _float(value: Any) -> float:
    """A float read back from JSON, where non-finite values were written as null."""
    return math.nan if value is None else float(value)


def _freeze(obj: Any, name: str, mapping: Mapping[str, Any]) -> None:
    """Store a read-only copy of `mapping` on a frozen dataclass (used in __post_init__)."""
    object.__setattr__(obj, name, MappingProxyType(dict(mapping)))


def read_fields(what: str, build: Any, data: Any) -> Any:
    """`build(data)`; a missing or mistyped field becomes a QuantlensError naming `what`."""
    if not isinstance(data, Mapping):
        raise QuantlensError(f"{what}: expected a JSON object, got {type(data).__name__}")
    try:
        return build(data)
    except (KeyError, TypeError, ValueError) as error:
        raise QuantlensError(f"{what}: {type(error).__name__} {error}") from None


def runner_info_from_dict(data: Mapping[str, Any]) -> RunnerInfo:
    """Inverse of `RunnerInfo.to_dict` ("fell_back" is derived, and ignored)."""
    return read_fields("runner info", lambda d: RunnerInfo(
        backend=d["backend"], requested_precision=d["requested_precision"], actual_precision=d["actual_precision"],
        device=d["device"], provider=d["provider"], threads=int(d["threads"]), notes=tuple(d["notes"]),
        float_ops=tuple(d["float_ops"]), model_files=tuple(d["model_files"]),
        parameter_bytes=int(d["parameter_bytes"])), data)


@dataclass(frozen=True)
class Agreement:
    """A backend's logits against eager FP32's on the same images."""

    samples: int
    top1_agreement: float  # fraction of images with the same top-1 class
    max_abs_diff: float  # largest |logit difference|
    mean_abs_diff: float
    reference_max_abs: float  # largest |FP32 logit|, the scale the differences compare with
    limited_by_time: bool  # fewer images than asked, to keep the check under max_call_seconds

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Agreement:
        return read_fields("agreement", lambda d: cls(
            samples=int(d["samples"]), top1_agreement=_float(d["top1_agreement"]),
            max_abs_diff=_float(d["max_abs_diff"]), mean_abs_diff=_float(d["mean_abs_diff"]),
            reference_max_abs=_float(d["reference_max_abs"]), limited_by_time=bool(d["limited_by_time"])), data)


@dataclass(frozen=True)
class CallMemory:
    """Memory of one call at one batch size: peak RSS, and CUDA peak memory on a GPU."""

    peak_rss: PeakRss
    cuda_peak: CudaPeak | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"peak_rss": self.peak_rss.to_dict(),
                "cuda_peak": None if self.cuda_peak is None else self.cuda_peak.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallMemory:
        return read_fields("call memory", lambda d: cls(
            PeakRss.from_dict(d["peak_rss"]),
            None if d.get("cuda_peak") is None else CudaPeak.from_dict(d["cuda_peak"])), data)


@dataclass(frozen=True)
class BackendOutcome:
    """What became of one requested backend. Paths in `info` are relative to the run folder."""

    name: str
    status: Literal["ready", "unavailable", "failed"]
    reason: str = ""
    description: str = ""
    info: RunnerInfo | None = None
    prepare_seconds: float = 0.0
    prepare_rss_increase_bytes: int = 0  # RSS after preparing minus before (allocator caches included)
    file_bytes: int = 0  # model file(s) on disk
    parameter_bytes: int = 0  # weights as the runtime holds them
    agreement: Agreement | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "reason": self.reason, "description": self.description,
                "info": self.info.to_dict() if self.info else None, "prepare_seconds": self.prepare_seconds,
                "prepare_rss_increase_bytes": self.prepare_rss_increase_bytes, "file_bytes": self.file_bytes,
                "parameter_bytes": self.parameter_bytes,
                "agreement": self.agreement.to_dict() if self.agreement else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BackendOutcome:
        return read_fields("backend outcome", lambda d: cls(
            name=d["name"], status=d["status"], reason=d["reason"], description=d["description"],
            info=None if d["info"] is None else runner_info_from_dict(d["info"]),
            prepare_seconds=_float(d["prepare_seconds"]),
            prepare_rss_increase_bytes=int(d["prepare_rss_increase_bytes"]),
            file_bytes=int(d["file_bytes"]), parameter_bytes=int(d["parameter_bytes"]),
            agreement=None if d["agreement"] is None else Agreement.from_dict(d["agreement"])), data)


@dataclass(frozen=True)
class BatchOutcome:
    """One batch size: the timed records (from one interleaved run), the comparison that holds
    their speedups and noise flags, memory per backend, and the backends left out with the reason."""

    batch_size: int
    records: Mapping[str, BenchmarkRecord]  # backend -> record, in timing order
    comparison: Comparison | None  # None when fewer than two backends were timed
    baseline: str | None  # None when the baseline was not timed at this size
    excluded: Mapping[str, str]  # backend -> why it was not timed
    memory: Mapping[str, CallMemory]  # backend -> memory of one call
    rounds: int

    def __post_init__(self) -> None:
        for name in ("records", "excluded", "memory"):
            _freeze(self, name, getattr(self, name))

    @property
    def speedups(self) -> dict[str, Speedup]:
        """Candidate -> speedup over the baseline (empty without a comparison or a baseline)."""
        if self.comparison is None or self.baseline is None:
            return {}
        return {name: self.comparison.speedup(self.baseline, name) for name in self.records if name != self.baseline}

    def noisy(self, name: str) -> bool:
        return self.comparison is not None and self.comparison.noisy.get(name, False)

    @property
    def notes(self) -> tuple[BenchmarkNote, ...]:
        """The comparison's notes, each said of this batch size."""
        return tuple(note.at_batch(self.batch_size) for note in self.comparison.notes) if self.comparison else ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON; records are written once (the comparison refers to them), and "speedups",
        "noisy", "notes" and "summaries" are derived values for readers."""
        return {"batch_size": self.batch_size, "baseline": self.baseline, "rounds": self.rounds,
                "timed": list(self.records), "excluded": dict(self.excluded),
                "memory": {name: memory.to_dict() for name, memory in self.memory.items()},
                "comparison": None if self.comparison is None else self.comparison.to_dict(records=False),
                "records": {name: record.to_dict() for name, record in self.records.items()},
                "speedups": {name: s.to_dict() for name, s in self.speedups.items()},
                "noisy": {name: self.noisy(name) for name in self.records},
                "notes": [note.to_dict() for note in self.notes],
                "summaries": {name: {"summary": r.summary.to_dict(), "throughput": r.throughput,
                                     "throughput_ci": r.throughput_ci} for name, r in self.records.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchOutcome:
        def build(d: Mapping[str, Any]) -> BatchOutcome:
            records = {name: BenchmarkRecord.from_dict(record) for name, record in d["records"].items()}
            comparison = None if d["comparison"] is None else Comparison.from_dict(d["comparison"], records=records)
            return cls(batch_size=int(d["batch_size"]), records=records, comparison=comparison,
                       baseline=d["baseline"], excluded=dict(d["excluded"]),
                       memory={name: CallMemory.from_dict(m) for name, m in d["memory"].items()},
                       rounds=int(d["rounds"]))

        return read_fields("batch outcome", build, data)
