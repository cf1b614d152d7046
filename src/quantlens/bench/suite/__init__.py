"""A benchmark session: one model on several real backends, prepared, checked, timed side by side,
profiled, and written as typed results that read back from their JSON.

    from quantlens.bench.suite import BenchmarkSession, BenchmarkReport
    report = BenchmarkSession(model, config, input_shape=(3, 224, 224), calibration=batches,
                              out_dir=run_dir / "benchmark").run()
    report.batch(64).speedups["ort-int8"].ratio, report.notes
    BenchmarkReport.load(run_dir / "benchmark" / "benchmark.json") == report   # True

One module per job: `prepare` (backends and their agreement with FP32), `batches` (one
interleaved run per batch size), `pipelines` (stage timing), `profiles` (per-operator), `outputs`
(the JSON files); `results` and `report` hold the typed results; `session` runs them in order.
"""

from quantlens.bench.suite.report import REPORT_SCHEMA, REPORT_VERSION, BenchmarkReport
from quantlens.bench.suite.results import Agreement, BackendOutcome, BatchOutcome, CallMemory
from quantlens.bench.suite.session import AGREEMENT_NOTE_BELOW, BenchmarkSession, run_benchmark

__all__ = [
    "AGREEMENT_NOTE_BELOW", "REPORT_SCHEMA", "REPORT_VERSION", "Agreement", "BackendOutcome", "BatchOutcome",
    "BenchmarkReport", "BenchmarkSession", "CallMemory", "run_benchmark",
]
