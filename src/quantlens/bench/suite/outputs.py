"""The JSON files of a benchmark, under its folder (`out_dir`), each written atomically:

    records/batch-<B>/<backend>.json     one BenchmarkRecord per backend and batch size
    comparison-batch-<B>.json            the Comparison of one interleaved run (records included)
    records/pipeline/<backend>.json      the stage-timed pipeline's BenchmarkRecord
    profile-<base>-vs-<cand>.json        a ProfileComparison
    benchmark.json                       the BenchmarkReport (everything above, read back by `load`)

Each reads back with its type's `load`. Tables and figures are the report layer's
(`quantlens.report.bench_tables`, `quantlens.report.bench_plots`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from quantlens.bench.suite.inputs import RunPaths
from quantlens.bench.suite.report import REPORT_FILE, BenchmarkReport


def write_outputs(report: BenchmarkReport, paths: RunPaths) -> BenchmarkReport:
    """Write every file of `report`; the report returned lists them (relative to the run folder)."""
    out = paths.out_dir
    files: list[Path] = []
    for batch in report.batches:
        for name, record in batch.records.items():
            files.append(record.save(out / "records" / f"batch-{batch.batch_size}" / f"{name}.json"))
        if batch.comparison is not None:
            files.append(batch.comparison.save(out / f"comparison-batch-{batch.batch_size}.json"))
    for pipeline in report.pipelines:
        files.append(pipeline.measured.save(out / "records" / "pipeline" / f"{pipeline.backend}.json"))
    for profile in report.profiles:
        files.append(profile.save(out / f"profile-{profile.baseline.backend}-vs-{profile.candidate.backend}.json"))
    files.append(out / REPORT_FILE)
    report = dataclasses.replace(report, files=tuple(paths.relative(f) for f in files))
    report.save()
    return report
