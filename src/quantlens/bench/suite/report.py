"""`BenchmarkReport`: everything one benchmark session measured, as `benchmark.json` holds it.

Paths. Every path a benchmark writes into JSON (the files it wrote, each backend's model files)
is relative to the run folder, written with forward slashes: "benchmark/records/batch-8/ort-int8.json".
A run folder is written as `<id>.partial/` and renamed when the run completes, so an absolute
path would point into a folder that no longer exists. In memory, `run_dir` is the folder they
start from; `BenchmarkReport.load` sets it from where `benchmark.json` was found (the report's
`folder`, e.g. "benchmark", says how deep inside the run folder that is).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from quantlens.atomic import write_json
from quantlens.bench.frozen import frozen_json_mapping, thaw
from quantlens.bench.notes import BenchmarkNote, issue_warnings
from quantlens.bench.pipeline import PipelineTimings
from quantlens.bench.profile import ProfileComparison
from quantlens.bench.suite.results import BackendOutcome, BatchOutcome, read_fields
from quantlens.errors import QuantlensError
from quantlens.recipes.benchmark import BenchmarkConfig

REPORT_SCHEMA = "quantlens.benchmark_report"
# 2: records, comparisons and pipelines held in full (read back by from_dict); typed notes;
# paths relative to the run folder.
REPORT_VERSION = 2
REPORT_FILE = "benchmark.json"


@dataclass(frozen=True)
class BenchmarkReport:
    """Everything one benchmark run measured; `to_dict()` is what `benchmark.json` holds and
    `from_dict` / `load` read it back into an equal report."""

    model: str
    input_shape: tuple[int, int, int]  # (C, H, W) of one image
    config: BenchmarkConfig
    environment: Mapping[str, Any]
    threads: int
    backends: tuple[BackendOutcome, ...]
    batches: tuple[BatchOutcome, ...]  # ascending batch size
    pipelines: tuple[PipelineTimings, ...]
    profiles: tuple[ProfileComparison, ...]
    notes: tuple[BenchmarkNote, ...]
    folder: str = "."  # the benchmark's folder, relative to the run folder
    files: tuple[str, ...] = ()  # files written, relative to the run folder
    run_dir: Path = field(default=Path("."), compare=False)  # where the relative paths start (not stored)

    def __post_init__(self) -> None:
        object.__setattr__(self, "environment", frozen_json_mapping(self.environment, "environment"))
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))

    @property
    def out_dir(self) -> Path:
        """The benchmark's folder (tables and figures go there by default)."""
        return self.run_dir / self.folder

    def path(self, relative: str) -> Path:
        """A path written in the report, on this machine."""
        return self.run_dir / relative

    def relocated(self, run_dir: str | Path) -> BenchmarkReport:
        """The same report, its relative paths starting from `run_dir` (a renamed run folder)."""
        return replace(self, run_dir=Path(run_dir))

    def backend(self, name: str) -> BackendOutcome:
        for outcome in self.backends:
            if outcome.name == name:
                return outcome
        raise QuantlensError(f"backend {name!r} was not part of this benchmark")

    def batch(self, batch_size: int) -> BatchOutcome:
        for outcome in self.batches:
            if outcome.batch_size == batch_size:
                return outcome
        raise QuantlensError(f"batch size {batch_size} was not part of this benchmark")

    def warn(self, *, stacklevel: int = 2) -> None:
        """Issue the notes as Python warnings (NoisyRunWarning ...), for callers that use `warnings`."""
        issue_warnings(self.notes, stacklevel=stacklevel + 1)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": REPORT_SCHEMA, "version": REPORT_VERSION, "model": self.model,
                "input_shape": list(self.input_shape), "threads": self.threads,
                "config": self.config.model_dump(mode="json"), "environment": thaw(self.environment),
                "paths": "relative to the run folder", "folder": self.folder, "files": list(self.files),
                "backends": [b.to_dict() for b in self.backends], "batches": [b.to_dict() for b in self.batches],
                "pipelines": [p.to_dict() for p in self.pipelines], "profiles": [p.to_dict() for p in self.profiles],
                "notes": [note.to_dict() for note in self.notes]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, run_dir: str | Path = ".") -> BenchmarkReport:
        """Inverse of `to_dict`; `run_dir` is where the report's relative paths start."""
        if not isinstance(data, Mapping) or data.get("schema") != REPORT_SCHEMA:
            raise QuantlensError(f"not a quantlens benchmark report (expected schema {REPORT_SCHEMA!r})")
        if data.get("version") != REPORT_VERSION:
            raise QuantlensError(f"benchmark report version {data.get('version')!r} is not supported "
                                 f"(this quantlens reads version {REPORT_VERSION})")
        return read_fields("benchmark report", lambda d: cls(
            model=d["model"], input_shape=tuple(d["input_shape"]), config=BenchmarkConfig.model_validate(d["config"]),
            environment=d["environment"], threads=int(d["threads"]),
            backends=tuple(BackendOutcome.from_dict(b) for b in d["backends"]),
            batches=tuple(BatchOutcome.from_dict(b) for b in d["batches"]),
            pipelines=tuple(PipelineTimings.from_dict(p) for p in d["pipelines"]),
            profiles=tuple(ProfileComparison.from_dict(p) for p in d["profiles"]),
            notes=tuple(BenchmarkNote.from_dict(n) for n in d["notes"]),
            folder=d["folder"], files=tuple(d["files"]), run_dir=Path(run_dir)), data)

    def save(self) -> Path:
        """Write `benchmark.json` into the benchmark's folder, atomically."""
        return write_json(self.out_dir / REPORT_FILE, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> BenchmarkReport:
        """Read a `benchmark.json` (or the folder holding it); its paths start from the run folder
        found above it."""
        path = Path(path)
        if path.is_dir():
            path = path / REPORT_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise QuantlensError(f"cannot read benchmark report {path}: {error}") from None
        run_dir = path.parent
        for part in PurePosixPath(str(data.get("folder", "."))).parts:
            run_dir = run_dir if part == "." else run_dir.parent
        return cls.from_dict(data, run_dir=run_dir)
