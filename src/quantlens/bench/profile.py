"""Per-operator time breakdown of a backend, and of two side by side: why is INT8 (not) faster?

A runner's own profiler does the measuring (`Runner.profile_operators`: ONNX Runtime's session
profiling, torch.profiler, OpenVINO's PERF_COUNT); this module classifies and adds up. Every
operator falls in one category (`quantlens.backends.op_categories.op_category`):

    int8        integer inputs or a quantized kernel (QLinearConv, quantized::conv2d, *_I8 kernels)
    float       floating-point inputs; inside an INT8 model these are the ops that were left in
                float between a DequantizeLinear and a QuantizeLinear (ReduceMean for global
                pooling, the option-A shortcut's Slice + Pad ...)
    conversion  QuantizeLinear / DequantizeLinear / Cast and their torch counterparts
    other       bookkeeping (aten::item ...)

`compare_profiles` then says, with the numbers, where the candidate's time goes relative to the
baseline: how much faster its convolutions and matrix products are by themselves, and how much of
its time goes to conversions and to operators left in float. Profiled times include the
profiler's own overhead; trust the shares and ratios more than the milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from quantlens.atomic import read_json, write_json
from quantlens.backends.base import OperatorProfile, Runner, cpu_has_int8_dot_product
from quantlens.backends.op_categories import is_compute_op, op_category
from quantlens.errors import QuantlensError

CATEGORIES = ("int8", "float", "conversion", "other")
SCHEMA = "quantlens.profile_comparison"
SCHEMA_VERSION = 1


def _read(what: str, build: Any, data: Mapping[str, Any]) -> Any:
    """`build(data)`, with a missing or mistyped field reported as a QuantlensError naming `what`."""
    try:
        return build(data)
    except (KeyError, TypeError, ValueError) as error:
        raise QuantlensError(f"not {what}: {type(error).__name__} {error}") from None


@dataclass(frozen=True)
class OpRow:
    """One operator type of one category, per profiled call of the model."""

    op_type: str
    category: str
    seconds: float  # per model call
    calls: float  # executions per model call
    share: float  # of the profiled time per model call
    input_dtypes: tuple[str, ...]
    implementations: tuple[str, ...]
    compute: bool  # a convolution or matrix product

    def to_dict(self) -> dict[str, Any]:
        return {"op_type": self.op_type, "category": self.category, "seconds": self.seconds, "calls": self.calls,
                "share": self.share, "input_dtypes": list(self.input_dtypes),
                "implementations": list(self.implementations), "compute": self.compute}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OpRow:
        return _read("an operator row", lambda d: cls(
            op_type=d["op_type"], category=d["category"], seconds=float(d["seconds"]), calls=float(d["calls"]),
            share=float(d["share"]), input_dtypes=tuple(d["input_dtypes"]),
            implementations=tuple(d["implementations"]), compute=bool(d["compute"])), data)


@dataclass(frozen=True)
class OperatorBreakdown:
    """A backend's profile per operator type, slowest first, times per model call."""

    backend: str
    precision: str  # the precision the runner actually ran
    batch_size: int
    runs: int
    source: str
    rows: tuple[OpRow, ...]

    @property
    def total_seconds(self) -> float:
        return sum(row.seconds for row in self.rows)

    def seconds_in(self, category: str) -> float:
        return sum(row.seconds for row in self.rows if row.category == category)

    @property
    def compute_seconds(self) -> float:
        return sum(row.seconds for row in self.rows if row.compute)

    @property
    def is_int8(self) -> bool:
        return any(row.category == "int8" for row in self.rows)

    def float_rows(self) -> tuple[OpRow, ...]:
        """Operators that ran in float inside an INT8 model (empty for a float model)."""
        return tuple(row for row in self.rows if row.category == "float") if self.is_int8 else ()

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "precision": self.precision, "batch_size": self.batch_size,
                "runs": self.runs, "source": self.source, "total_seconds": self.total_seconds,
                "seconds_by_category": {c: self.seconds_in(c) for c in CATEGORIES},
                "compute_seconds": self.compute_seconds,
                "float_ops_in_int8": [row.op_type for row in self.float_rows()],
                "rows": [row.to_dict() for row in self.rows]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OperatorBreakdown:
        """Inverse of `to_dict`; the totals are derived from the rows, and ignored."""
        return _read("an operator breakdown", lambda d: cls(
            backend=d["backend"], precision=d["precision"], batch_size=int(d["batch_size"]), runs=int(d["runs"]),
            source=d["source"], rows=tuple(OpRow.from_dict(row) for row in d["rows"])), data)


def breakdown(profile: OperatorProfile, precision: str) -> OperatorBreakdown:
    """Merge a raw profile by (operator type, category), per model call, slowest first."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for op in profile.ops:
        category = op_category(op)
        entry = merged.setdefault((op.op_type, category), {"seconds": 0.0, "calls": 0, "dtypes": [], "impl": [],
                                                           "compute": is_compute_op(op)})
        entry["seconds"] += op.seconds
        entry["calls"] += op.calls
        dtypes = "/".join(op.input_dtypes) or "-"
        if dtypes not in entry["dtypes"]:
            entry["dtypes"].append(dtypes)
        if op.implementation not in entry["impl"]:
            entry["impl"].append(op.implementation)
    total = sum(entry["seconds"] for entry in merged.values()) / profile.runs
    rows = [OpRow(op_type=op_type, category=category, seconds=entry["seconds"] / profile.runs,
                  calls=entry["calls"] / profile.runs,
                  share=(entry["seconds"] / profile.runs) / total if total > 0 else 0.0,
                  input_dtypes=tuple(entry["dtypes"]), implementations=tuple(entry["impl"]),
                  compute=entry["compute"])
            for (op_type, category), entry in merged.items()]
    rows.sort(key=lambda row: -row.seconds)
    return OperatorBreakdown(backend=profile.backend, precision=precision, batch_size=profile.batch_size,
                             runs=profile.runs, source=profile.source, rows=tuple(rows))


def profile_runner(runner: Runner, batch: torch.Tensor, *, runs: int = 3) -> OperatorBreakdown:
    """Profile `runs` calls of `runner` on `batch` and break the time down by operator."""
    return breakdown(runner.profile_operators(batch, runs), runner.info.actual_precision)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def _listing(rows: Sequence[OpRow], limit: int = 4) -> str:
    return ", ".join(f"{row.op_type} {_ms(row.seconds)}" for row in rows[:limit])


def explain(baseline: OperatorBreakdown, candidate: OperatorBreakdown) -> tuple[str, ...]:
    """Sentences, with numbers, on where the candidate's time goes compared with the baseline's."""
    lines = []
    total_ratio = baseline.total_seconds / candidate.total_seconds if candidate.total_seconds > 0 else float("nan")
    lines.append(f"profiled time per call at batch {candidate.batch_size}: {baseline.backend} "
                 f"{_ms(baseline.total_seconds)}, {candidate.backend} {_ms(candidate.total_seconds)} "
                 f"({total_ratio:.2f}x)")
    if baseline.compute_seconds > 0 and candidate.compute_seconds > 0:
        kernel = baseline.compute_seconds / candidate.compute_seconds
        lines.append(f"convolutions and matrix products alone: {_ms(baseline.compute_seconds)} -> "
                     f"{_ms(candidate.compute_seconds)} ({kernel:.2f}x); they are "
                     f"{candidate.compute_seconds / candidate.total_seconds:.0%} of {candidate.backend}'s time")
        if candidate.is_int8 and kernel < 3.0 and not cpu_has_int8_dot_product():
            lines.append("this CPU has no VNNI/AMX-INT8: its int8 convolutions use AVX2 vpmaddubsw (pairs of "
                         "u8 x s8 products into int16, then widened), about twice the FP32 FMA rate at best, "
                         "so INT8 kernels cannot be several times faster here")
    conversions = [row for row in candidate.rows if row.category == "conversion"]
    if conversions and candidate.total_seconds > 0:
        share = candidate.seconds_in("conversion") / candidate.total_seconds
        lines.append(f"{share:.0%} of {candidate.backend}'s time converts between float and int8: "
                     f"{_listing(conversions)}")
    float_rows = candidate.float_rows()
    if float_rows and candidate.total_seconds > 0:
        share = candidate.seconds_in("float") / candidate.total_seconds
        lines.append(f"{share:.0%} of {candidate.backend}'s time runs in float inside the INT8 model: "
                     f"{_listing(float_rows)}")
    non_compute = [row for row in candidate.rows if not row.compute and row.category != "conversion"]
    if non_compute and candidate.total_seconds > 0:
        share = sum(row.seconds for row in non_compute) / candidate.total_seconds
        lines.append(f"{share:.0%} of {candidate.backend}'s time is outside convolutions, matrix products and "
                     f"conversions (element-wise, pooling, layout): {_listing(non_compute)}")
    calls = sum(row.calls for row in candidate.rows)
    if calls > 0:
        per_op = candidate.total_seconds / calls
        if per_op < 50e-6:
            lines.append(f"{candidate.backend} runs {calls:.0f} operators per call at {per_op * 1e6:.0f} us each on "
                         f"average: per-operator overhead, not arithmetic, sets its speed at this batch size")
    return tuple(lines)


@dataclass(frozen=True)
class SideBySideRow:
    """One operator type in both profiles (0 s and "" category where a profile lacks it)."""

    op_type: str
    baseline_seconds: float  # per model call
    baseline_share: float
    baseline_category: str
    candidate_seconds: float
    candidate_share: float
    candidate_category: str
    float_in_int8: bool  # the candidate is an INT8 model and runs this operator in float

    @property
    def category(self) -> str:
        """The candidate's category (else the baseline's); "FLOAT inside INT8" when it applies."""
        return "FLOAT inside INT8" if self.float_in_int8 else (self.candidate_category or self.baseline_category)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class ProfileComparison:
    """Two breakdowns side by side and the explanation of their difference."""

    baseline: OperatorBreakdown
    candidate: OperatorBreakdown
    explanation: tuple[str, ...]

    def side_by_side(self) -> list[SideBySideRow]:
        """One row per operator type (union of both), slowest in either first. Operator names of
        two runtimes rarely match (aten::conv2d vs QLinearConv); rows line up where they do."""
        def by_type(breakdown_: OperatorBreakdown) -> dict[str, OpRow]:
            rows: dict[str, OpRow] = {}
            for row in breakdown_.rows:
                rows.setdefault(row.op_type, row)
            return rows

        base, cand = by_type(self.baseline), by_type(self.candidate)
        names = sorted(set(base) | set(cand),
                       key=lambda n: -max(base[n].seconds if n in base else 0.0, cand[n].seconds if n in cand else 0.0))
        table = []
        for name in names:
            b, c = base.get(name), cand.get(name)
            table.append(SideBySideRow(
                op_type=name, baseline_seconds=b.seconds if b else 0.0, baseline_share=b.share if b else 0.0,
                baseline_category=b.category if b else "", candidate_seconds=c.seconds if c else 0.0,
                candidate_share=c.share if c else 0.0, candidate_category=c.category if c else "",
                float_in_int8=bool(c and self.candidate.is_int8 and c.category == "float")))
        return table

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data; "side_by_side" is derived (for readers), and ignored by `from_dict`."""
        return {"schema": SCHEMA, "version": SCHEMA_VERSION, "baseline": self.baseline.to_dict(),
                "candidate": self.candidate.to_dict(), "explanation": list(self.explanation),
                "side_by_side": [row.to_dict() for row in self.side_by_side()]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfileComparison:
        if not isinstance(data, Mapping) or data.get("schema") != SCHEMA or data.get("version") != SCHEMA_VERSION:
            raise QuantlensError(f"not a quantlens profile comparison (expected schema {SCHEMA!r}, "
                                 f"version {SCHEMA_VERSION})")
        return _read("a profile comparison", lambda d: cls(
            baseline=OperatorBreakdown.from_dict(d["baseline"]), candidate=OperatorBreakdown.from_dict(d["candidate"]),
            explanation=tuple(d["explanation"])), data)

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> ProfileComparison:
        return cls.from_dict(read_json(path, "profile comparison"))


def compare_profiles(baseline: OperatorBreakdown, candidate: OperatorBreakdown) -> ProfileComparison:
    return ProfileComparison(baseline, candidate, explain(baseline, candidate))
