"""Figures of a backend benchmark (PNG): latency distributions, pipeline stages, throughput.

Drawn with matplotlib's object-oriented API on the Agg canvas, so making a figure neither needs
a display nor changes pyplot's global backend or state.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from quantlens.atomic import write_bytes
from quantlens.experiments.benchmarking import BenchmarkReport

STAGE_COLOURS = {"decode": "#8c564b", "transform": "#e377c2", "features": "#6baed6", "head": "#17becf",
                 "forward": "#1f77b4", "postprocess": "#ff7f0e"}


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return write_bytes(path, buffer.getvalue())


def plot_latency_distributions(report: BenchmarkReport, path: str | Path) -> Path | None:
    """Box plots of the raw samples (ms per call), one panel per batch size; None when nothing was timed."""
    batches = [b for b in report.batches if b.records]
    if not batches:
        return None
    height = sum(0.45 * len(b.records) + 1.0 for b in batches)
    figure = Figure(figsize=(9, max(3.0, height)), layout="constrained")
    axes = figure.subplots(len(batches), 1, squeeze=False)[:, 0]
    for ax, batch in zip(axes, batches, strict=True):
        names = list(batch.records)
        samples = [np.asarray(batch.records[n].samples_s) * 1e3 for n in names]
        ax.boxplot(samples, orientation="horizontal", tick_labels=names, showfliers=True, widths=0.6,
                   medianprops={"color": "black"}, flierprops={"markersize": 3})
        rng = np.random.default_rng(0)
        for row, values in enumerate(samples, start=1):
            ax.scatter(values, row + rng.uniform(-0.18, 0.18, size=values.size), s=4, alpha=0.35, color="tab:blue")
        spread = max(v.max() for v in samples) / max(min(v.min() for v in samples), 1e-12)
        if spread > 20:
            ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_xlabel("ms per call")
        ax.set_title(f"{report.model}: batch {batch.batch_size}, raw samples of one interleaved run", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    return _save(figure, Path(path))


def plot_stage_breakdown(report: BenchmarkReport, path: str | Path) -> Path | None:
    """Stacked bars of median stage times per pipeline; None when no pipeline was timed."""
    if not report.pipelines:
        return None
    figure = Figure(figsize=(9, 1.8 + 0.6 * len(report.pipelines)), layout="constrained")
    ax = figure.subplots()
    labels = []
    for row, pipeline in enumerate(report.pipelines):
        left = 0.0
        for stage in pipeline.measured_stages():
            width = float(np.median(pipeline.samples(stage))) * 1e3
            ax.barh(row, width, left=left, color=STAGE_COLOURS.get(stage, "grey"), edgecolor="white",
                    label=stage if stage not in ax.get_legend_handles_labels()[1] else None)
            left += width
        total = pipeline.summaries()["total"]
        ax.text(left, row, f"  total {total.median * 1e3:.3g} ms [{total.median_ci[0] * 1e3:.3g}, "
                           f"{total.median_ci[1] * 1e3:.3g}]", va="center", fontsize=8)
        labels.append(f"{pipeline.backend}\n({pipeline.batch_size} images)")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("median ms per request (stages stacked)")
    ax.set_title(f"{report.model}: classification pipeline by stage", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=len(STAGE_COLOURS), fontsize=8, frameon=False)
    ax.margins(x=0.3)
    return _save(figure, Path(path))


def plot_throughput(report: BenchmarkReport, path: str | Path) -> Path | None:
    """Images/s against batch size per backend, with the 95 % CI as error bars; None when fewer
    than one batch size was timed."""
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
    sizes = sorted({b.batch_size for b in report.batches})
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / s (median, 95% CI)")
    ax.set_title(f"{report.model}: throughput vs batch size ({report.threads} threads)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(figure, Path(path))


def write_benchmark_plots(report: BenchmarkReport, out_dir: str | Path | None = None) -> list[Path]:
    """latency.png, stages.png and throughput.png under `out_dir` (default: the report's); the
    figures with nothing to show are not written."""
    folder = Path(out_dir) if out_dir is not None else report.out_dir
    written = [plot_latency_distributions(report, folder / "latency.png"),
               plot_stage_breakdown(report, folder / "stages.png"),
               plot_throughput(report, folder / "throughput.png")]
    return [path for path in written if path is not None]
