"""The benchmark's text tables and figures are readable: tables fit 100 columns without wrapping
and name their units, the stage shares add up to what the note says, no absurd percentage is
printed, and no two labels of a figure overlap at the size it is saved at."""

from __future__ import annotations

import io
import itertools
import re

import numpy as np
import pytest
import suite_fakes as fakes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from rich.console import Console

from quantlens.report import bench_plots, bench_tables
from quantlens.report.bench_tables import TABLE_WIDTH, benchmark_text, stages_note

REPORTS = {"awkward": fakes.report(), "crowded": fakes.crowded_report()}
# A unit in a header: ms, img/s, x, MB, s, %, or logits for |dlogit|.
UNIT = re.compile(r"(?<![A-Za-z])(ms|img/s|x|MB|s)(?![A-Za-z])|%|\|dlogit\|")


def tables(report):
    yield "backends", bench_tables.backends_table(report)
    for batch in report.batches:
        yield f"batch {batch.batch_size}", bench_tables.batch_table(report, batch)
    for pipeline in report.pipelines:
        yield f"stages {pipeline.backend}", bench_tables.stages_table(report, pipeline)
    for comparison in report.profiles:
        yield "profile", bench_tables.profile_table(comparison)


def rendered(table, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    console.print(table)
    return console.export_text()


@pytest.mark.parametrize("which", REPORTS)
def test_tables_fit_100_columns_without_wrapping_and_name_their_units(which):
    for name, table in tables(REPORTS[which]):
        text = rendered(table, TABLE_WIDTH)
        assert max(len(line.rstrip()) for line in text.splitlines()) <= TABLE_WIDTH, (name, text)
        assert text == rendered(table, 400), f"{name} is squeezed (cells cut or wrapped) at {TABLE_WIDTH} columns"
        assert "…" not in text or name == "profile", (name, text)  # only long kernel names are cut
        for column in table.columns:
            if column.justify == "right":  # a column of numbers
                assert UNIT.search(str(column.header)), f"{name}: column {column.header!r} says no unit"
    assert max(len(line) for line in benchmark_text(REPORTS[which]).splitlines()) <= TABLE_WIDTH


def test_a_stalled_run_shows_no_absurd_percentage():
    text = benchmark_text(REPORTS["awkward"])
    rows = [line for line in text.splitlines() if line.startswith(fakes.STALLED) and "noisy" in line]
    assert len(rows) == 3 and all(">100 noisy" in row for row in rows)  # one per batch size
    assert not re.search(r"\d{4,}(\.\d+)?%", text)  # e.g. the "46117.9%" once printed
    assert "a quarter of the samples took" in text and "stalled, not merely spread" in text


def share_column(table_text: str, stages) -> dict[str, float]:
    rows = {line.split()[0]: float(line.split()[-1]) for line in table_text.splitlines()
            if line.split() and line.split()[0] in stages}
    assert set(rows) == set(stages)
    return rows


@pytest.mark.parametrize("split", [True, False])
def test_stage_shares_add_up_to_what_the_note_says(split):
    # 0.5 ms of the 10 ms request outside every stage: the shares must add up to ~95 %, not 100 %.
    pipeline = fakes.pipeline("torch-fp32", split, 7, bookkeeping_s=0.5e-3)
    shares = pipeline.mean_shares()
    measured = pipeline.measured_stages()
    assert sum(shares[s] for s in measured) == pytest.approx(pipeline.accounted_fraction)
    assert pipeline.accounted_fraction == pytest.approx(1 - 0.5e-3 / np.mean(pipeline.samples("total")))
    assert shares["preprocess"] == pytest.approx(shares["decode"] + shares["transform"])
    if split:
        assert shares["forward"] == pytest.approx(shares["features"] + shares["head"])
    assert shares["total"] == 1.0

    text = rendered(bench_tables.stages_table(REPORTS["awkward"], pipeline), TABLE_WIDTH)
    printed = share_column(text, measured)
    claimed = float(re.search(r"add up to ([\d.]+)%", stages_note(pipeline)).group(1))
    assert 93 < claimed < 97
    assert sum(printed.values()) == pytest.approx(claimed, abs=0.05 * len(measured) + 0.05)  # rounding only
    groups = share_column(text, ["preprocess", "total"])
    assert groups["preprocess"] == pytest.approx(printed["decode"] + printed["transform"], abs=0.11)
    assert groups["total"] == 100.0


def drawn_labels(figure):
    """(text, window extent) of every label the figure really draws (tick labels out of view are not)."""
    drawn: list[Text] = []
    original = Text.draw

    def spy(self, renderer):
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)
        return original(self, renderer)

    FigureCanvasAgg(figure)
    Text.draw = spy
    try:
        figure.canvas.draw()
    finally:
        Text.draw = original
    renderer = figure.canvas.get_renderer()
    return [(text.get_text(), text.get_window_extent(renderer)) for text in drawn]


@pytest.mark.parametrize("which", REPORTS)
@pytest.mark.parametrize("build", ["latency_figure", "stages_figure", "throughput_figure"])
def test_figures_have_no_overlapping_labels(which, build):
    figure = getattr(bench_plots, build)(REPORTS[which])
    figure.set_dpi(bench_plots.DPI)  # the size it is saved at
    labels = drawn_labels(figure)
    assert len(labels) > 5
    canvas = figure.bbox
    for text, box in labels:
        assert box.x0 >= canvas.x0 - 1 and box.x1 <= canvas.x1 + 1 and box.y0 >= canvas.y0 - 1 and \
            box.y1 <= canvas.y1 + 1, f"{build}: {text!r} is outside the figure"
    for (a, box_a), (b, box_b) in itertools.combinations(labels, 2):
        assert not box_a.overlaps(box_b), f"{build}: {a!r} overlaps {b!r}"
