"""The benchmark stage: the experiment's model on real backends; `benchmark/benchmark.json`, written
by the benchmark session itself with every path relative to the run folder."""

from __future__ import annotations

from quantlens.bench.suite import BenchmarkReport
from quantlens.bench.suite.report import REPORT_FILE
from quantlens.experiments.bench_stage import run_benchmark_stage
from quantlens.experiments.stages.base import STAGES, RunContext, Stage


def benchmark(ctx: RunContext) -> BenchmarkReport:
    return run_benchmark_stage(ctx.spec, ctx.setup, ctx.data, ctx.eval_idx, ctx.calib_idx, ctx.record, None)


STAGES.add("benchmark", Stage(
    "benchmark",
    order=40,
    result_type=BenchmarkReport,
    file=f"benchmark/{REPORT_FILE}",
    enabled=lambda spec: spec.benchmark.enabled,
    run=benchmark,
    writes_itself=True,
))
