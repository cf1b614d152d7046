"""Comparing benchmarks: interleaved A/B/C runs, speedups with CIs, noise and machine checks.

Timing A for a minute and then B for a minute lets anything that changes in between (another
job starting, the CPU clocking down, the page cache filling) pose as a difference between A and
B. `run_interleaved` alternates between the candidates in rounds, a few samples each per visit,
so drift and bursts of noise fall on all of them alike.

Records measured on different machines are not comparable: `compare_records` refuses them
unless the caller says `allow_different_machines=True`, and then says so in the result.

Caveats (a noisy run, different machines, a warm-up that never settled) are `BenchmarkNote`s on
the `Comparison`, never printed or warned from here: whoever shows the result prints them, and
`Comparison.warn()` issues them as Python warnings for callers that want those.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from quantlens.atomic import read_json, write_json
from quantlens.bench.notes import (  # noqa: F401  (the warning classes are re-exported from here)
    BenchmarkNote,
    BenchmarkWarning,
    DifferentMachinesWarning,
    NoisyRunWarning,
    issue_warnings,
)
from quantlens.bench.plan import WarmupPolicy
from quantlens.bench.record import UNKNOWN_MACHINE, BenchmarkRecord, iso_utc
from quantlens.bench.stats import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    NOISY_ROBUST_CV,
    ROBUST_CV_READABLE_UP_TO,
    Speedup,
    describe_spread,
    speedup,
)
from quantlens.bench.timing import make_sampler, warm_up
from quantlens.environment import capture_environment
from quantlens.errors import QuantlensError

_NS_PER_S = 1_000_000_000
MAX_ROUNDS = 100_000
MAX_SAMPLES_PER_ROUND = 10_000
SCHEMA = "quantlens.benchmark_comparison"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Comparison:
    """Records of the candidates and all pairwise speedups (earlier candidate as the pair's
    baseline; the comparison's baseline comes first), with its caveats as `notes`."""

    records: Mapping[str, BenchmarkRecord]
    baseline: str
    speedups: tuple[Speedup, ...]
    noisy: Mapping[str, bool]
    noise_threshold: float
    different_machines: bool
    machine_fingerprints: Mapping[str, str]
    notes: tuple[BenchmarkNote, ...]
    round_orders: tuple[tuple[str, ...], ...] = ()  # execution order per round, when interleaved

    @property
    def any_noisy(self) -> bool:
        return any(self.noisy.values())

    def speedup(self, baseline: str, candidate: str) -> Speedup:
        """The speedup of `candidate` over `baseline` (either order of a stored pair)."""
        for pair in self.speedups:
            if (pair.baseline, pair.candidate) == (baseline, candidate):
                return pair
        for pair in self.speedups:
            if (pair.baseline, pair.candidate) == (candidate, baseline):
                low, high = pair.ci
                return Speedup(baseline, candidate, 1.0 / pair.ratio, (1.0 / high, 1.0 / low), pair.confidence)
        raise QuantlensError(f"no speedup between {baseline!r} and {candidate!r} "
                             f"(candidates: {', '.join(self.records)})")

    def warn(self, *, stacklevel: int = 2) -> None:
        """Issue the notes as Python warnings (NoisyRunWarning, DifferentMachinesWarning ...)."""
        issue_warnings(self.notes, stacklevel=stacklevel + 1)

    def to_dict(self, *, records: bool = True) -> dict[str, Any]:
        """Plain JSON data; `records=False` leaves the records out (a report that holds them
        already passes them back to `from_dict`)."""
        data: dict[str, Any] = {
            "schema": SCHEMA, "version": SCHEMA_VERSION,
            "baseline": self.baseline, "candidates": list(self.records),
            "speedups": [pair.to_dict() for pair in self.speedups],
            "noisy": dict(self.noisy), "noise_threshold": self.noise_threshold,
            "different_machines": self.different_machines,
            "machine_fingerprints": dict(self.machine_fingerprints),
            "notes": [note.to_dict() for note in self.notes],
            "round_orders": [list(order) for order in self.round_orders],
        }
        if records:
            data["records"] = {name: record.to_dict() for name, record in self.records.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *,
                  records: Mapping[str, BenchmarkRecord] | None = None) -> Comparison:
        """Inverse of `to_dict`; `records` stands in for the data's own (see `to_dict`)."""
        if not isinstance(data, Mapping) or data.get("schema") != SCHEMA:
            raise QuantlensError(f"not a quantlens comparison (expected schema {SCHEMA!r})")
        if data.get("version") != SCHEMA_VERSION:
            raise QuantlensError(f"comparison version {data.get('version')!r} is not supported "
                                 f"(this quantlens reads version {SCHEMA_VERSION})")
        try:
            if records is None:
                records = {name: BenchmarkRecord.from_dict(record) for name, record in data["records"].items()}
            ordered = {name: records[name] for name in data["candidates"]}
            return cls(records=MappingProxyType(ordered), baseline=data["baseline"],
                       speedups=tuple(Speedup.from_dict(pair) for pair in data["speedups"]),
                       noisy=MappingProxyType({str(k): bool(v) for k, v in data["noisy"].items()}),
                       noise_threshold=float(data["noise_threshold"]),
                       different_machines=bool(data["different_machines"]),
                       machine_fingerprints=MappingProxyType(dict(data["machine_fingerprints"])),
                       notes=tuple(BenchmarkNote.from_dict(note) for note in data["notes"]),
                       round_orders=tuple(tuple(order) for order in data.get("round_orders", ())))
        except KeyError as missing:
            raise QuantlensError(f"comparison is missing the field {missing}") from None

    def save(self, path: str | Path) -> Path:
        """Write the comparison (records included) as JSON, atomically."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Comparison:
        return cls.from_dict(read_json(path, "comparison"))


def compare_records(records: Sequence[BenchmarkRecord], *, baseline: str | None = None,
                    allow_different_machines: bool = False, noise_threshold: float = NOISY_ROBUST_CV,
                    confidence: float = DEFAULT_CONFIDENCE, resamples: int = DEFAULT_RESAMPLES,
                    seed: int = DEFAULT_SEED) -> Comparison:
    """Pairwise speedups (per item, so differing batch sizes compare fairly), noise flags and the
    machine check for records measured earlier. `baseline` defaults to the first record.

    Raises QuantlensError when the records come from different machines (or one has no machine
    fingerprint) unless `allow_different_machines=True`; then the result says so in a note (a
    DifferentMachinesWarning from `Comparison.warn()`).
    """
    records = list(records)
    if len(records) < 2:
        raise QuantlensError(f"a comparison needs at least two records, got {len(records)}")
    for record in records:
        if not isinstance(record, BenchmarkRecord):
            raise QuantlensError(f"compare_records takes BenchmarkRecords, got {type(record).__name__}")
    names = [record.name for record in records]
    if len(set(names)) != len(names):
        raise QuantlensError(f"record names must be unique to be compared, got {names}")
    baseline = names[0] if baseline is None else baseline
    if baseline not in names:
        raise QuantlensError(f"baseline {baseline!r} is not among the records ({', '.join(names)})")
    if not noise_threshold > 0.0:
        raise QuantlensError(f"noise_threshold must be positive, got {noise_threshold}")
    ordered = [r for r in records if r.name == baseline] + [r for r in records if r.name != baseline]

    notes: list[BenchmarkNote] = []
    fingerprints = {r.name: r.machine_fingerprint for r in ordered}
    different = len(set(fingerprints.values())) > 1 or UNKNOWN_MACHINE in fingerprints.values()
    if different:
        detail = ", ".join(f"{name}: {fp}" for name, fp in fingerprints.items())
        if not allow_different_machines:
            raise QuantlensError(
                f"these records come from different machines (or one lacks a machine fingerprint) "
                f"({detail}); their timings are not comparable. Pass allow_different_machines=True "
                f"to compare them anyway")
        notes.append(BenchmarkNote("different_machines", f"comparing records from different machines ({detail}): "
                                                         f"differences may be the machines'"))

    noisy = {r.name: r.is_noisy(noise_threshold) for r in ordered}
    for record in ordered:
        if noisy[record.name]:
            spread = describe_spread(record.summary)
            if record.summary.robust_cv <= ROBUST_CV_READABLE_UP_TO:  # a readable percentage: say the limit
                spread += f" exceeds {noise_threshold:.0%}"
            notes.append(BenchmarkNote("noisy", f"{record.name!r} is noisy: {spread}; the machine was probably "
                                                f"busy, re-run on a quiet one", backend=record.name))
        if not record.steady_state_reached and record.timing_plan.get("warmup", {}).get("until_steady", False):
            notes.append(BenchmarkNote("warmup", f"{record.name!r}: warm-up hit its cap before the timings settled",
                                       backend=record.name))

    pairs = []
    for i, first in enumerate(ordered):
        for second in ordered[i + 1:]:
            pairs.append(speedup(first.samples / first.batch_size, second.samples / second.batch_size,
                                 baseline_name=first.name, candidate_name=second.name,
                                 confidence=confidence, resamples=resamples, seed=seed))
    return Comparison(
        records=MappingProxyType({r.name: r for r in ordered}), baseline=baseline, speedups=tuple(pairs),
        noisy=MappingProxyType(noisy), noise_threshold=noise_threshold, different_machines=different,
        machine_fingerprints=MappingProxyType(fingerprints), notes=tuple(notes),
    )


@dataclass(frozen=True)
class InterleavePlan:
    """How `run_interleaved` visits the candidates.

    Each candidate is first warmed up on its own (`warmup`). Then, for `rounds` rounds, each
    candidate in turn runs `discard_per_round` samples that are thrown away (its caches are cold
    after the others ran; 0 keeps that cost in the numbers), then `samples_per_round` kept samples.
    `order` is "alternate" (the same order every round: ABC ABC ...) or "shuffle" (a fresh seeded
    random order each round, so no candidate always follows the same one).
    """

    rounds: int = 20
    samples_per_round: int = 5
    order: Literal["alternate", "shuffle"] = "shuffle"
    seed: int = 0
    warmup: WarmupPolicy = field(default_factory=WarmupPolicy)
    discard_per_round: int = 1
    inner_loops: int = 1

    def __post_init__(self) -> None:
        def check_int(name: str, low: int, high: int) -> None:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise QuantlensError(f"{name} must be an integer in [{low}, {high}], got {value!r}")

        check_int("rounds", 1, MAX_ROUNDS)
        check_int("samples_per_round", 1, MAX_SAMPLES_PER_ROUND)
        check_int("discard_per_round", 0, MAX_SAMPLES_PER_ROUND)
        check_int("inner_loops", 1, 10_000_000)
        if self.order not in ("alternate", "shuffle"):
            raise QuantlensError(f"order must be 'alternate' or 'shuffle', got {self.order!r}")
        if not isinstance(self.warmup, WarmupPolicy):
            raise QuantlensError(f"warmup must be a WarmupPolicy, got {type(self.warmup).__name__}")

    def round_orders(self, names: Sequence[str]) -> tuple[tuple[str, ...], ...]:
        """The visiting order of every round, decided before anything runs."""
        names = tuple(names)
        if self.order == "alternate":
            return tuple(names for _ in range(self.rounds))
        rng = np.random.default_rng(self.seed)
        return tuple(tuple(names[i] for i in rng.permutation(len(names))) for _ in range(self.rounds))

    def describe(self, names: Sequence[str]) -> dict[str, Any]:
        warmup = self.warmup
        return {
            "stop": {"rule": "interleaved_rounds", "rounds": self.rounds,
                     "samples_per_round": self.samples_per_round},
            "warmup": {"iterations": warmup.iterations, "until_steady": warmup.until_steady,
                       "window": warmup.window, "tolerance": warmup.tolerance,
                       "max_iterations": warmup.max_iterations, "max_seconds": warmup.max_seconds},
            "inner_loops": self.inner_loops,
            "interleave": {"order": self.order, "seed": self.seed, "discard_per_round": self.discard_per_round,
                           "candidates": list(names)},
        }


def run_interleaved(candidates: Mapping[str, Callable[[], object]], plan: InterleavePlan | None = None, *,
                    baseline: str | None = None, synchronize: Callable[[], object] | None = None,
                    batch_size: int = 1, item_unit: str = "item",
                    metadata: Mapping[str, Mapping[str, Any]] | None = None,
                    environment: Mapping[str, Any] | None = None,
                    noise_threshold: float = NOISY_ROBUST_CV,
                    on_round: Callable[[int], object] | None = None,
                    on_warmup: Callable[[str], object] | None = None) -> Comparison:
    """Time the candidates (name -> zero-argument callable) interleaved, one record each.

    `plan` defaults to `InterleavePlan()` (20 shuffled rounds of 5 samples, steady-state warm-up);
    `metadata` maps candidate names to their record's metadata (backend, precision ...);
    `environment` defaults to one `capture_environment()` shared by all records; `on_round(i)`
    is called after round i (0-based), between samples, and `on_warmup(name)` after each
    candidate's warm-up, e.g. to advance a progress bar.
    """
    plan = InterleavePlan() if plan is None else plan
    if not isinstance(plan, InterleavePlan):
        raise QuantlensError(f"plan must be an InterleavePlan, got {type(plan).__name__}")
    if not isinstance(candidates, Mapping) or len(candidates) < 2:
        raise QuantlensError("run_interleaved needs a mapping of at least two named candidates")
    for name, fn in candidates.items():
        if not isinstance(name, str) or not name:
            raise QuantlensError(f"candidate names must be non-empty strings, got {name!r}")
        if not callable(fn):
            raise QuantlensError(f"candidate {name!r} is not callable ({type(fn).__name__})")
    if synchronize is not None and not callable(synchronize):
        raise QuantlensError(f"synchronize must be callable, got {type(synchronize).__name__}")
    metadata = dict(metadata or {})
    unknown = set(metadata) - set(candidates)
    if unknown:
        raise QuantlensError(f"metadata given for unknown candidates: {', '.join(sorted(unknown))}")
    names = list(candidates)
    environment = capture_environment() if environment is None else environment
    samplers = {name: make_sampler(fn, plan.inner_loops, synchronize) for name, fn in candidates.items()}
    orders = plan.round_orders(names)

    started_at = time.time()
    warmups = {}
    for name in names:
        warmups[name] = warm_up(samplers[name], plan.warmup)
        if on_warmup is not None:
            on_warmup(name)
    kept: dict[str, list[int]] = {name: [] for name in names}
    for index, order in enumerate(orders):
        for name in order:
            sample = samplers[name]
            for _ in range(plan.discard_per_round):
                sample()
            kept[name].extend(sample() for _ in range(plan.samples_per_round))
        if on_round is not None:
            on_round(index)
    finished_at = time.time()

    per_call = float(plan.inner_loops * _NS_PER_S)
    records = [
        BenchmarkRecord(
            name=name, samples_s=[ns / per_call for ns in kept[name]],
            warmup_samples_s=[ns / per_call for ns in warmups[name][0]],
            steady_state_reached=warmups[name][1], inner_loops=plan.inner_loops,
            batch_size=batch_size, item_unit=item_unit, metadata=metadata.get(name, {}),
            timing_plan=plan.describe(names), environment=environment,
            started_at=iso_utc(started_at), finished_at=iso_utc(finished_at),
        )
        for name in names
    ]
    comparison = compare_records(records, baseline=baseline, noise_threshold=noise_threshold)
    return replace(comparison, round_orders=orders)
