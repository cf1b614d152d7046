"""Text tables of a backend benchmark (rich tables on a terminal, plain text in `table.txt`).

Every table fits in 100 columns and every column of numbers names its unit (ms, img/s, x, %, MB,
s). Figures are medians with their 95 % bootstrap CI on the line below; a speedup's CI comes from
resampling both backends' samples; "noisy" marks a backend whose robust CV exceeded the threshold
in that run, and a robust CV past 100 % shows as ">100" (the notes then give the quartiles that
make it). Everything is read from the report's typed results.
"""

from __future__ import annotations

import io
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from quantlens.atomic import write_text
from quantlens.bench.pipeline import PipelineTimings
from quantlens.bench.profile import ProfileComparison
from quantlens.bench.stats import ROBUST_CV_READABLE_UP_TO
from quantlens.bench.suite import BatchOutcome, BenchmarkReport

TABLE_WIDTH = 100  # columns every table fits in (checked by the tests)
_MB = 1024 * 1024
_LIMITED = "*"  # marks an agreement checked on fewer images than asked (max_call_seconds)


def _num(value: float) -> str:
    """Three significant digits, whole numbers from 100 on: 0.0123, 1.23, 12.3, 123, 12345."""
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _ms(seconds: float) -> str:
    return _num(seconds * 1e3)


def _with_ci(value: str, low: str, high: str) -> Text:
    """A figure with its CI on the line below (keeps the columns narrow)."""
    return Text(f"{value}\n[{low}, {high}]")


def _mb(num_bytes: float) -> str:
    return f"{num_bytes / _MB:.1f}"


def _table(title: str, columns: list[tuple[str, str]]) -> Table:
    """A borderless table; columns: (header, "left" | "right")."""
    # No borders; two spaces between columns (one of padding, one of the rule's blank divider).
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  padding=(0, 1, 0, 0))
    for header, justify in columns:
        table.add_column(header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    return table


def _row(table: Table, *cells: str | Text) -> None:
    table.add_row(*(cell if isinstance(cell, Text) else Text(cell) for cell in cells))


def backends_table(report: BenchmarkReport) -> Table:
    """One row per requested backend: what ran, how it was prepared, how close it is to FP32."""
    asked = report.config.agreement_samples
    table = _table(f"{report.model} {tuple(report.input_shape)}: backends ({report.threads} threads); agreement "
                   f"with eager FP32 on up to {asked} images",
                   [("backend", "left"), ("precision ran\n(or status)", "left"), ("device", "left"),
                    ("prepare\ns", "right"), ("file\nMB", "right"), ("weights\nMB", "right"),
                    ("top-1\nagree %", "right"), ("max\n|dlogit|", "right")])
    for outcome in report.backends:
        info, agreement = outcome.info, outcome.agreement
        if info is None:  # unavailable or failed: the reason is printed under the table
            _row(table, outcome.name, outcome.status, "-", "-", "-", "-", "-", "-")
            continue
        top1 = "-" if agreement is None else (f"{agreement.top1_agreement * 100:.1f}"
                                              + (_LIMITED if agreement.limited_by_time else ""))
        _row(table, outcome.name, info.precision_label, info.device, f"{outcome.prepare_seconds:.1f}",
             _mb(outcome.file_bytes), _mb(outcome.parameter_bytes), top1,
             "-" if agreement is None else f"{agreement.max_abs_diff:.3g}")
    return table


def _robust_cv(cv: float, noisy: bool) -> str:
    shown = f">{ROBUST_CV_READABLE_UP_TO * 100:.0f}" if cv > ROBUST_CV_READABLE_UP_TO else f"{cv * 100:.1f}"
    return shown + (" noisy" if noisy else "")


def batch_table(report: BenchmarkReport, batch: BatchOutcome) -> Table:
    """Latency / throughput of every backend timed at one batch size, with speedups over the baseline."""
    kind = "latency" if batch.batch_size == 1 else "throughput"
    baseline = batch.baseline or "-"
    counts = sorted({record.summary.count for record in batch.records.values()})
    calls = f", {'/'.join(map(str, counts))} timed calls per backend" if counts else ""
    table = _table(f"{report.model}, batch {batch.batch_size} ({kind}): one interleaved run, {batch.rounds} rounds"
                   f"{calls}; speedup vs {baseline}",
                   [("backend\nprecision ran", "left"), ("median ms\n[95% CI]", "right"),
                    ("ms/img", "right"), ("img/s", "right"), ("speedup x\n[95% CI]", "right"),
                    ("robust\nCV %", "right"), ("peak RSS\n+MB", "right")])
    speedups = batch.speedups
    for name, record in batch.records.items():
        summary = record.summary
        info = report.backend(name).info
        speedup = speedups.get(name)
        speedup_cell: str | Text = ("1 (base)" if name == batch.baseline else "-" if speedup is None else
                                    _with_ci(_num(speedup.ratio), _num(speedup.ci[0]), _num(speedup.ci[1])))
        memory = batch.memory.get(name)
        _row(table, Text(f"{name}\n{info.precision_label if info else '?'}"),
             _with_ci(_ms(summary.median), _ms(summary.median_ci[0]), _ms(summary.median_ci[1])),
             _ms(summary.median / record.batch_size), _num(record.throughput), speedup_cell,
             _robust_cv(summary.robust_cv, batch.noisy(name)),
             _mb(memory.peak_rss.increase_bytes) if memory else "-")
    for name in batch.excluded:
        _row(table, Text(f"{name}\nnot timed"), "-", "-", "-", "-", "-", "-")
    return table


def stages_table(report: BenchmarkReport, pipeline: PipelineTimings) -> Table:
    """One pipeline's stages: median and mean with CIs, p90, p99, IQR, and the share of the mean
    total. The measured stages come first (their shares add up to `accounted_fraction`), then the
    groups derived from them (preprocess = decode + transform, forward = features + head) and the total."""
    table = _table(f"{report.model}: classification pipeline by stage, {pipeline.backend}, {pipeline.batch_size} "
                   f"images per request",
                   [("stage", "left"), ("median ms\n[95% CI]", "right"), ("mean ms\n[95% CI]", "right"),
                    ("p90 ms", "right"), ("p99 ms", "right"), ("IQR ms", "right"), ("share of\nmean %", "right")])
    summaries, shares = pipeline.summaries(), pipeline.mean_shares()
    measured = pipeline.measured_stages()
    derived = [stage for stage in summaries if stage not in measured and stage != "total"]
    for group in (measured, derived, ["total"]):
        if group and group is not measured:
            table.add_section()  # a rule between the partition, its groups and the total
        for stage in group:
            summary = summaries[stage]
            _row(table, stage, _with_ci(_ms(summary.median), _ms(summary.median_ci[0]), _ms(summary.median_ci[1])),
                 _with_ci(_ms(summary.mean), _ms(summary.mean_ci[0]), _ms(summary.mean_ci[1])),
                 _ms(summary.p90), _ms(summary.p99), _ms(summary.iqr), f"{shares[stage] * 100:.1f}")
    return table


def stages_note(pipeline: PipelineTimings) -> str:
    """What the share column adds up to, in words (printed under the stage table)."""
    stages = pipeline.measured_stages()
    groups = [f"{name} = {' + '.join(parts)}" for name, parts in
              (("preprocess", ("decode", "transform")), ("forward", ("features", "head")))
              if name in pipeline.stage_names() and name not in stages]
    return (f"{pipeline.backend}: {pipeline.split_note}; {', '.join(stages)} add up to "
            f"{pipeline.accounted_fraction * 100:.1f}% of the mean total (the rest is the stage timer's own "
            f"bookkeeping)" + (f"; {', '.join(groups)}" if groups else ""))


def profile_table(comparison: ProfileComparison, limit: int = 15) -> Table:
    """The two backends' operators side by side (per model call), slowest first."""
    base, cand = comparison.baseline, comparison.candidate
    table = _table(f"operators: {base.backend} ({base.precision}) vs {cand.backend} ({cand.precision}), "
                   f"batch {cand.batch_size}, per model call ({base.source} / {cand.source})",
                   [("operator", "left"), (f"{base.backend}\nms", "right"), ("share\n%", "right"),
                    (f"{cand.backend}\nms", "right"), ("share\n%", "right"), ("category", "left")])
    table.columns[0].max_width = 28  # long kernel names are cut with an ellipsis, not wrapped
    table.columns[0].overflow = "ellipsis"
    for row in comparison.side_by_side()[:limit]:
        _row(table, row.op_type,
             _ms(row.baseline_seconds) if row.baseline_seconds else "",
             f"{row.baseline_share * 100:.0f}" if row.baseline_seconds else "",
             _ms(row.candidate_seconds) if row.candidate_seconds else "",
             f"{row.candidate_share * 100:.0f}" if row.candidate_seconds else "", row.category)
    _row(table, "total", _ms(base.total_seconds), "", _ms(cand.total_seconds), "", "")
    return table


def _line(console: Console, text: str) -> None:
    console.print(text, markup=False, highlight=False)


def print_benchmark(report: BenchmarkReport, console: Console) -> None:
    """Every table of the report, what each backend ran on, the profiles' explanations and the notes."""
    console.print(backends_table(report))
    for outcome in report.backends:
        if outcome.info is None:
            _line(console, f"  {outcome.name}: {outcome.status}: {outcome.reason}")
            continue
        info = outcome.info
        _line(console, f"  {outcome.name}: {info.provider} on {info.device}, {info.threads} threads")
        for note in info.notes:
            _line(console, f"    - {note}")
    if any(o.agreement and o.agreement.limited_by_time for o in report.backends):
        _line(console, f"  {_LIMITED} agreement checked on fewer images, to keep its call under max_call_seconds")
    for batch in report.batches:
        console.print(batch_table(report, batch))
        for name, reason in batch.excluded.items():
            _line(console, f"  {name} not timed at batch {batch.batch_size}: {reason}")
    for pipeline in report.pipelines:
        console.print(stages_table(report, pipeline))
        _line(console, f"  {stages_note(pipeline)}")
    for comparison in report.profiles:
        console.print(profile_table(comparison))
        base, cand = comparison.baseline, comparison.candidate
        ratio = base.total_seconds / cand.total_seconds if cand.total_seconds > 0 else float("nan")
        _line(console, f"{cand.backend} vs {base.backend}: {ratio:.2f}x in the operator profile; where the time goes:")
        for line in comparison.explanation:
            _line(console, f"  - {line}")
    if report.notes:
        _line(console, "notes:")
        for note in report.notes:
            _line(console, f"  - {note}")


def benchmark_text(report: BenchmarkReport, width: int = TABLE_WIDTH) -> str:
    """The printed report as plain text (no colours), `width` columns wide."""
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    print_benchmark(report, console)
    return console.export_text()


def write_benchmark_tables(report: BenchmarkReport, path: str | Path | None = None) -> Path:
    """Write `benchmark_text(report)` to `path` (default `<out_dir>/table.txt`), atomically."""
    return write_text(path or report.out_dir / "table.txt", benchmark_text(report))
