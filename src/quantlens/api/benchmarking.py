"""`benchmark`: a model's latency and throughput on real backends, side by side, in one call.

It runs `quantlens.bench.suite.BenchmarkSession` (what `quantlens bench` and the experiment's
benchmark stage run): every backend prepared and checked against eager FP32 on the example
images, then one interleaved timing run per batch size, with raw samples, medians, bootstrap
intervals, speedups and noise flags in the typed `BenchmarkReport`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from quantlens.api.data import DataLike, first_samples
from quantlens.bench.stats import Speedup, Summary
from quantlens.bench.suite import BenchmarkReport, BenchmarkSession
from quantlens.errors import ConfigError, DataError, QuantlensError
from quantlens.recipes.benchmark import BenchmarkConfig
from quantlens.recipes.validation import describe_validation_error

CALIBRATION_BATCH = 32  # samples per calibration batch taken from the data (as the benchmark stage does)


@dataclass(frozen=True)
class BenchmarkResult:
    """What `benchmark` measured. `report` holds everything (records with raw samples, the
    comparison of each interleaved run, each backend's outcome and agreement with FP32, notes);
    `out_dir` is where its JSON files are, or None when they were written to a temporary folder
    (the report's `files` then name files that no longer exist)."""

    report: BenchmarkReport
    out_dir: Path | None

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return tuple(batch.batch_size for batch in self.report.batches)

    @property
    def ready(self) -> tuple[str, ...]:
        """The backends that were prepared (the others say why not in `report.backends`)."""
        return tuple(o.name for o in self.report.backends if o.status == "ready")

    def latency(self, backend: str, batch_size: int | None = None) -> Summary:
        """Seconds per call of `backend` at `batch_size` (default: the smallest): median, quartiles,
        percentiles, and the median's bootstrap interval (`median_ci`)."""
        return self._record(backend, batch_size).summary

    def throughput(self, backend: str, batch_size: int | None = None) -> float:
        """Images per second at the median latency."""
        return self._record(backend, batch_size).throughput

    def speedup(self, backend: str, batch_size: int | None = None) -> Speedup:
        """`backend` against the baseline (torch-fp32 when listed): ratio of medians with its interval."""
        batch = self.report.batch(self._size(batch_size))
        speedups = batch.speedups
        if backend not in speedups:
            raise QuantlensError(f"no speedup of {backend!r} at batch size {batch.batch_size} (timed: "
                                 f"{', '.join(batch.records)}; baseline {batch.baseline})")
        return speedups[backend]

    def table(self) -> str:
        """The report as the plain-text tables `quantlens bench` prints."""
        from quantlens.report.bench_tables import benchmark_text  # noqa: PLC0415  (rich is only needed here)

        return benchmark_text(self.report)

    def _size(self, batch_size: int | None) -> int:
        return min(self.batch_sizes) if batch_size is None else batch_size

    def _record(self, backend: str, batch_size: int | None):
        batch = self.report.batch(self._size(batch_size))
        if backend not in batch.records:
            why = batch.excluded.get(backend) or next(
                (o.reason for o in self.report.backends if o.name == backend and o.reason), "it was not benchmarked")
            raise QuantlensError(f"{backend!r} was not timed at batch size {batch.batch_size}: {why}")
        return batch.records[backend]


def _config(backends: Sequence[str] | None, batch_sizes: Sequence[int], threads: int | str,
            options: dict[str, Any]) -> BenchmarkConfig:
    from quantlens.backends import BACKENDS  # noqa: PLC0415

    values: dict[str, Any] = {"batch_sizes": tuple(batch_sizes), "threads": threads, "stages": False, **options}
    if backends is not None:
        values["backends"] = (backends,) if isinstance(backends, str) else tuple(backends)
    try:
        config = BenchmarkConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, "benchmark", BenchmarkConfig)) from None
    for name in config.backends:
        if name not in BACKENDS:
            raise ConfigError(f"benchmark: backends: {BACKENDS.unknown_message(name)}")
    return config


def benchmark(model: nn.Module, backends: Sequence[str] | None = None, *, example: DataLike,
              calibration_data: DataLike | None = None, batch_sizes: Sequence[int] = (1, 8),
              threads: int | str = "auto", out_dir: str | Path | None = None, model_name: str = "model",
              **options: Any) -> BenchmarkResult:
    """Latency and throughput of `model` (FP32, left unchanged) on `backends` (default: torch-fp32,
    torch-int8, ort-fp32, ort-int8; `quantlens.backends.BACKENDS` lists them all).

    example: input images, a tensor (N, C, H, W), or data as `evaluate` takes it (a Dataset,
        DataLoader, ...): its first `agreement_samples` (64) images check every backend against
        eager FP32 and are the timing inputs. Labels are not used.
    calibration_data: data for static INT8 backends (its first `calibration_batches` batches of
        32); default: the example images.
    batch_sizes: one interleaved timing run each. threads: intra-op threads of every backend
        ("auto": all usable cores; 1 is steadier on a busy machine).
    out_dir: where the JSON records and `benchmark.json` go (default: a temporary folder, removed).
    options: any other field of `quantlens.recipes.benchmark.BenchmarkConfig` (rounds, min_seconds,
        warmup_max_seconds, profile, stages, ...); the pipeline stage timing (`stages`) is off here.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model is {type(model).__name__}; expected a torch.nn.Module")
    config = _config(backends, batch_sizes, threads, options)
    images = [b.x for b in first_samples(example, config.agreement_samples, batch_size=CALIBRATION_BATCH,
                                         what="example")]
    if not images:
        raise DataError("example yields no images")
    validation = torch.cat(images)
    if validation.ndim != 4:
        raise DataError(f"example images have shape {tuple(validation.shape)}; a benchmark needs image batches "
                        f"(N, C, H, W)")
    if calibration_data is None:
        calibration = list(validation.split(CALIBRATION_BATCH))
    else:
        wanted = config.calibration_batches * CALIBRATION_BATCH
        calibration = [b.x for b in first_samples(calibration_data, wanted, batch_size=CALIBRATION_BATCH,
                                                  what="calibration_data")]
    shape = tuple(int(d) for d in validation.shape[1:])
    with tempfile.TemporaryDirectory(prefix="quantlens-bench-") as scratch:
        folder = Path(out_dir) if out_dir is not None else Path(scratch) / "benchmark"
        report = BenchmarkSession(model, config, input_shape=shape, calibration=calibration, validation=validation,
                                  out_dir=folder, model_name=model_name).run()
    return BenchmarkResult(report, None if out_dir is None else Path(out_dir))
