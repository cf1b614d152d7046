"""Figures of a backend benchmark (PNG): latency distributions, pipeline stages, throughput.

Drawn with matplotlib's object-oriented API on the Agg canvas, so making a figure neither needs
a display nor changes pyplot's global backend or state. Laid out so that no two labels overlap
(the tests draw every figure and check the labels' boxes): names sit on the y axis of
horizontal bars and boxes, legends sit outside the axes (constrained layout makes room for
them), and log axes label only as many ticks as their length leaves room for.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from quantlens.atomic import write_bytes
from quantlens.bench.suite import BenchmarkReport

DPI = 120
STAGE_COLOURS = {"decode": "#8c564b", "transform": "#e377c2", "features": "#6baed6", "head": "#17becf",
                 "forward": "#1f77b4", "postprocess": "#ff7f0e"}


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return write_bytes(path, buffer.getvalue())


def _log_axis(axis: Axis, low: float, high: float, inches: float) -> None:
    """Log ticks labelled 1-2-5 per decade, or fewer when the axis is short for its decades
    (a label needs ~0.45 inch along it), written plainly ("0.5", "20", "2000"); minor ticks unlabelled."""
    decades = max(math.log10(max(high, 1e-300) / max(low, 1e-300)), 1e-9)
    per_decade = inches / decades
    subs = (1.0, 2.0, 5.0) if per_decade >= 1.6 else (1.0,) if per_decade >= 0.45 else None
    if subs is None:  # even one label a decade is too many: every n-th decade
        axis.set_major_locator(LogLocator(base=10.0, numticks=max(2, int(inches / 0.45))))
    else:
        axis.set_major_locator(LogLocator(base=10.0, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def latency_figure(report: BenchmarkReport) -> Figure | None:
    """Box plots of the raw samples (ms per call), one panel per batch size; None when nothing was timed."""
    batches = [b for b in report.batches if b.records]
    if not batches:
        return None
    width = 9.0
    height = sum(0.45 * len(b.records) + 1.1 for b in batches)
    figure = Figure(figsize=(width, max(3.0, height)), layout="constrained")
    axes = figure.subplots(len(batches), 1, squeeze=False)[:, 0]
    for ax, batch in zip(axes, batches, strict=True):
        names = list(batch.records)
        samples = [np.asarray(batch.records[n].samples_s) * 1e3 for n in names]  # (samples,) ms per call each
        ax.boxplot(samples, orientation="horizontal", tick_labels=names, showfliers=True, widths=0.6,
                   medianprops={"color": "black"}, flierprops={"markersize": 3})
        rng = np.random.default_rng(0)
        for row, values in enumerate(samples, start=1):
            ax.scatter(values, row + rng.uniform(-0.18, 0.18, size=values.size), s=4, alpha=0.35, color="tab:blue")
        low = min(float(v.min()) for v in samples)
        high = max(float(v.max()) for v in samples)
        if high / max(low, 1e-12) > 20:
            ax.set_xscale("log")
            _log_axis(ax.xaxis, low, high, width * 0.75)
        ax.invert_yaxis()
        ax.set_xlabel("ms per call")
        ax.set_title(f"{report.model}: batch {batch.batch_size}, raw samples of one interleaved run", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    return figure


def stages_figure(report: BenchmarkReport) -> Figure | None:
    """Stacked bars of the mean stage times per pipeline (means add up to the mean total, less the
    timer's bookkeeping; the stage table's shares are of the same means); None when none was timed."""
    if not report.pipelines:
        return None
    figure = Figure(figsize=(9, 1.6 + 0.8 * len(report.pipelines)), layout="constrained")
    ax = figure.subplots()
    labels, drawn = [], set()
    for row, pipeline in enumerate(report.pipelines):
        left = 0.0
        for stage in pipeline.measured_stages():
            width = float(np.mean(pipeline.samples(stage))) * 1e3
            ax.barh(row, width, left=left, height=0.6, color=STAGE_COLOURS.get(stage, "grey"), edgecolor="white",
                    label=None if stage in drawn else stage)
            drawn.add(stage)
            left += width
        total = pipeline.summaries()["total"]
        labels.append(f"{pipeline.backend}\n{pipeline.batch_size} images\nmean {total.mean * 1e3:.3g} ms")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(len(labels) - 0.5, -0.5)  # first pipeline on top, room for the three-line labels
    ax.set_xlabel("mean ms per request, stages stacked")
    ax.set_title(f"{report.model}: classification pipeline by stage", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    figure.legend(loc="outside lower center", ncol=len(drawn), fontsize=8, frameon=False)
    return figure


def throughput_figure(report: BenchmarkReport) -> Figure | None:
    """Images/s against batch size per backend, with the 95 % CI as error bars; None when nothing was timed."""
    series: dict[str, list[tuple[int, float, float, float]]] = {}
    for batch in report.batches:
        for name, record in batch.records.items():
            low, high = record.throughput_ci
            series.setdefault(name, []).append((batch.batch_size, record.throughput, low, high))
    if not series:
        return None
    figure = Figure(figsize=(8, 5), layout="constrained")
    ax = figure.subplots()
    for name, points in series.items():
        sizes, values, lows, highs = (np.array(v, dtype=float) for v in zip(*sorted(points), strict=True))
        ax.errorbar(sizes, values, yerr=[values - lows, highs - values], marker="o", capsize=3, label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    sizes = sorted({b.batch_size for b in report.batches if b.records})
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.xaxis.set_minor_formatter(NullFormatter())
    values = [v for points in series.values() for _, _, low, high in points for v in (low, high) if v > 0]
    _log_axis(ax.yaxis, min(values), max(values), 4.0)
    ax.set_xlabel("batch size (images per call)")
    ax.set_ylabel("images / s (median, 95% CI)")
    ax.set_title(f"{report.model}: throughput vs batch size ({report.threads} threads)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    figure.legend(loc="outside right upper", fontsize=8, frameon=False)
    return figure


def _plot(figure: Figure | None, path: str | Path) -> Path | None:
    return None if figure is None else _save(figure, Path(path))


def plot_latency_distributions(report: BenchmarkReport, path: str | Path) -> Path | None:
    return _plot(latency_figure(report), path)


def plot_stage_breakdown(report: BenchmarkReport, path: str | Path) -> Path | None:
    return _plot(stages_figure(report), path)


def plot_throughput(report: BenchmarkReport, path: str | Path) -> Path | None:
    return _plot(throughput_figure(report), path)


def write_benchmark_plots(report: BenchmarkReport, out_dir: str | Path | None = None) -> list[Path]:
    """latency.png, stages.png and throughput.png under `out_dir` (default: the report's); the
    figures with nothing to show are not written."""
    folder = Path(out_dir) if out_dir is not None else report.out_dir
    written = [plot_latency_distributions(report, folder / "latency.png"),
               plot_stage_breakdown(report, folder / "stages.png"),
               plot_throughput(report, folder / "throughput.png")]
    return [path for path in written if path is not None]
