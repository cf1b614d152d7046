"""Text tables of a backend benchmark (rich tables on a terminal, plain text in `table.txt`).

Figures are medians with their 95 % bootstrap CI; a speedup's CI comes from resampling both
backends' samples; "noisy" marks a backend whose robust CV exceeded the threshold in that run.
"""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console
from rich.table import Table

from quantlens.atomic import write_text
from quantlens.bench.profile import ProfileComparison
from quantlens.experiments.benchmarking import BatchOutcome, BenchmarkReport

_MB = 1024 * 1024


def _ms(seconds: float) -> str:
    """Milliseconds with three significant digits."""
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _ms_ci(median: float, ci: tuple[float, float]) -> str:
    return f"{_ms(median)} [{_ms(ci[0])}, {_ms(ci[1])}]"


def _mb(num_bytes: float) -> str:
    return f"{num_bytes / _MB:.1f}"


def backends_table(report: BenchmarkReport) -> Table:
    """One row per requested backend: what ran, how it was prepared, how close it is to FP32."""
    table = Table(title=f"{report.model} {tuple(report.input_shape)}: backends ({report.threads} threads)",
                  title_justify="left")
    for column in ("backend", "status", "precision", "device / provider", "prepare s", "file MB", "weights MB",
                   "top-1 agree", "max |dlogit|"):
        table.add_column(column, justify="left" if column in ("backend", "status", "device / provider") else "right")
    for outcome in report.backends:
        if outcome.info is None:
            table.add_row(outcome.name, outcome.status, "-", outcome.reason, "-", "-", "-", "-", "-")
            continue
        info, agreement = outcome.info, outcome.agreement
        table.add_row(
            outcome.name, outcome.status, info.precision_label, f"{info.device} / {info.provider}",
            f"{outcome.prepare_seconds:.1f}", _mb(outcome.file_bytes), _mb(outcome.parameter_bytes),
            f"{agreement.top1_agreement:.1%} (n={agreement.samples})" if agreement else "-",
            f"{agreement.max_abs_diff:.3g}" if agreement else "-")
    return table


def batch_table(report: BenchmarkReport, batch: BatchOutcome) -> Table:
    """Latency / throughput of every backend timed at one batch size, with speedups over the baseline."""
    kind = "latency" if batch.batch_size == 1 else "throughput"
    baseline = batch.baseline or "-"
    table = Table(title=f"{report.model}, batch {batch.batch_size} ({kind}): one interleaved run, {batch.rounds} "
                        f"rounds; speedup vs {baseline}", title_justify="left")
    for column in ("backend", "precision", "median ms/call [95% CI]", "ms/image", "images/s [95% CI]",
                   f"speedup vs {baseline} [95% CI]", "robust CV", "peak RSS +MB", "n"):
        table.add_column(column, justify="left" if column in ("backend", "precision") else "right")
    for name, record in batch.records.items():
        summary = record.summary
        precision = record.metadata.get("runner", {}).get("actual_precision", "?")
        requested = record.metadata.get("requested_precision", precision)
        label = precision if precision == requested else f"{requested}->{precision}"
        speedup = batch.speedups.get(name)
        speedup_text = ("1 (baseline)" if name == batch.baseline else
                        f"{speedup.ratio:.2f} [{speedup.ci[0]:.2f}, {speedup.ci[1]:.2f}]" if speedup else "-")
        noisy = batch.comparison is not None and batch.comparison.noisy.get(name, False)
        rss = batch.memory.get(name, {}).get("peak_rss", {}).get("increase_bytes")
        low, high = record.throughput_ci
        table.add_row(name, label, _ms_ci(summary.median, summary.median_ci), _ms(summary.median / record.batch_size),
                      f"{record.throughput:.1f} [{low:.1f}, {high:.1f}]", speedup_text,
                      f"{summary.robust_cv:.1%}" + (" noisy" if noisy else ""),
                      _mb(rss) if rss is not None else "-", str(summary.count))
    for name in batch.excluded:
        table.add_row(name, "-", "not timed (see below)", "-", "-", "-", "-", "-", "-")
    return table


def stages_table(report: BenchmarkReport) -> Table:
    """Pipeline stages per backend: median, p90, p99, mean with CIs, and the share of the total."""
    table = Table(title=f"{report.model}: classification pipeline by stage (ms per request)", title_justify="left")
    for column in ("backend", "stage", "median [95% CI]", "mean [95% CI]", "p90", "p99", "IQR", "share"):
        table.add_column(column, justify="left" if column in ("backend", "stage") else "right")
    for pipeline in report.pipelines:
        summaries = pipeline.summaries()
        total = summaries["total"].median
        for stage, summary in summaries.items():
            table.add_row(pipeline.backend if stage == pipeline.stage_names()[0] else "", stage,
                          _ms_ci(summary.median, summary.median_ci), _ms_ci(summary.mean, summary.mean_ci),
                          _ms(summary.p90), _ms(summary.p99), _ms(summary.iqr),
                          f"{summary.median / total:.0%}" if total > 0 else "-")
    return table


def profile_table(comparison: ProfileComparison, limit: int = 15) -> Table:
    """The two backends' operators side by side (per model call), slowest first."""
    base, cand = comparison.baseline, comparison.candidate
    table = Table(title=f"operators: {base.backend} ({base.precision}) vs {cand.backend} ({cand.precision}), "
                        f"batch {cand.batch_size}, ms per call ({base.source} / {cand.source})", title_justify="left")
    for column in ("operator", f"{base.backend} ms", "share", f"{cand.backend} ms", "share", "category"):
        table.add_column(column, justify="left" if column in ("operator", "category") else "right")
    for row in comparison.side_by_side()[:limit]:
        category = row["candidate_category"] or row["baseline_category"]
        if row["float_in_int8"]:
            category = "FLOAT inside INT8"
        table.add_row(row["op_type"],
                      _ms(row["baseline_seconds"]) if row["baseline_seconds"] else "",
                      f"{row['baseline_share']:.0%}" if row["baseline_seconds"] else "",
                      _ms(row["candidate_seconds"]) if row["candidate_seconds"] else "",
                      f"{row['candidate_share']:.0%}" if row["candidate_seconds"] else "", category)
    table.add_row("total", _ms(base.total_seconds), "", _ms(cand.total_seconds), "", "")
    return table


def print_benchmark(report: BenchmarkReport, console: Console) -> None:
    """Every table of the report, the backends' notes, the profiles' explanations and the warnings."""
    console.print(backends_table(report))
    for outcome in report.backends:
        for note in outcome.info.notes if outcome.info else ():
            console.print(f"  {outcome.name}: {note}", markup=False, highlight=False)
    for batch in report.batches:
        console.print(batch_table(report, batch))
        for name, reason in batch.excluded.items():
            console.print(f"  {name} not timed at batch {batch.batch_size}: {reason}", markup=False, highlight=False)
    if report.pipelines:
        console.print(stages_table(report))
        for pipeline in report.pipelines:
            console.print(f"  {pipeline.backend}: {pipeline.split_note}; stages account for "
                          f"{1 - pipeline.unaccounted_fraction:.2%} of the total", markup=False, highlight=False)
    for comparison in report.profiles:
        console.print(profile_table(comparison))
        base, cand = comparison.baseline, comparison.candidate
        ratio = base.total_seconds / cand.total_seconds if cand.total_seconds > 0 else float("nan")
        console.print(f"{cand.backend} vs {base.backend}: {ratio:.2f}x in the operator profile; where the time goes:",
                      markup=False, highlight=False)
        for line in comparison.explanation:
            console.print(f"  - {line}", markup=False, highlight=False)
    if report.notes:
        console.print("notes:", markup=False)
        for note in report.notes:
            console.print(f"  - {note}", markup=False, highlight=False)


def benchmark_text(report: BenchmarkReport, width: int = 180) -> str:
    """The printed report as plain text (no colours), `width` columns wide."""
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    print_benchmark(report, console)
    return console.export_text()


def write_benchmark_tables(report: BenchmarkReport, path: str | Path | None = None) -> Path:
    """Write `benchmark_text(report)` to `path` (default `<out_dir>/table.txt`), atomically."""
    return write_text(path or report.out_dir / "table.txt", benchmark_text(report))
