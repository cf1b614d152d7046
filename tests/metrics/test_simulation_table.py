"""The simulated-format comparison tables: units in every header, and nothing cut short at 100 columns."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from quantlens.experiments.runner import RunOutcome
from quantlens.experiments.stages import EvaluationResult, FormatRow, SimulationSummary
from quantlens.metrics import Predictions
from quantlens.metrics.classification import ClassificationMetrics
from quantlens.metrics.paired import paired_comparison
from quantlens.report.tables import simulation_table, simulation_tables

LONG_LABEL = "w:fp8_e4m3/channel in:fp8_e4m3/tensor bn:fp8_e4m3/tensor"


def _binary(labels, scores) -> Predictions:
    s = np.asarray(scores, dtype=np.float32)
    ids = np.array([str(i) for i in range(len(s))])
    return Predictions(np.arange(len(s)), labels, np.stack([1 - s, s], axis=1), ids)


def _row(label: str, reference: Predictions, candidate: Predictions) -> dict:
    paired = paired_comparison(reference, candidate)
    top1 = paired["deltas"]["top1"]["candidate"]
    return {"label": label, "top1": top1, "top5": None, "mean_confidence": 0.91, "ece": 0.042,
            "auroc": paired["deltas"].get("auroc", {}).get("candidate"),
            "sensitivity": paired["deltas"].get("sensitivity", {}).get("candidate"),
            "specificity": paired["deltas"].get("specificity", {}).get("candidate"),
            "prediction_agreement": paired["prediction_agreement"], "compliant": True, "compliance_violations": 0,
            "bits_per_weight": 4.25, "model_bytes": 61_440, "fp32_bytes": 491_520, "top1_delta": paired["top1_delta"],
            "top1_delta_ci": paired["top1_delta_ci"], "mcnemar_p": paired["mcnemar_p"],
            "confidence": paired["confidence"], "deltas": paired["deltas"]}


def _render(outcome: RunOutcome) -> str:
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(simulation_table(outcome, "simulated formats vs FP32 on the same samples"))
    return console.export_text()


def _assert_nothing_cut(text: str, cells: list[str]) -> None:
    assert "…" not in text and "..." not in text  # rich's ellipsis when a cell does not fit
    assert max(len(line) for line in text.splitlines()) <= 100
    lines = text.splitlines()
    for cell in cells:  # every value, interval and p whole, on one line
        assert any(cell in line for line in lines), cell


def _outcome(metrics: dict, rows: list[dict]) -> RunOutcome:
    """A run outcome holding FP32's metrics (missing ones zero) and the given format rows."""
    full = {"n": 0, "top1": 0.0, "top5": None, "macro_precision": 0.0, "macro_recall": 0.0, "macro_f1": 0.0,
            "auroc": None, "mean_confidence": 0.0, "ece": 0.0, "nll": 0.0, "per_class": {}, "confusion_matrix": [],
            **metrics}
    evaluation = EvaluationResult("test", "test", ClassificationMetrics.from_dict(full), {})
    summary = SimulationSummary({}, tuple(FormatRow.from_dict(row) for row in rows))
    return RunOutcome(Path("."), None, {"eval": evaluation, "quantization": summary})


@pytest.fixture
def binary_outcome():
    rng = np.random.default_rng(0)
    labels = (rng.random(600) < 0.4).astype(np.int64)
    fp32 = _binary(labels, np.clip(0.2 + 0.6 * labels + rng.normal(0, 0.15, 600), 0.01, 0.99))
    noisy = _binary(labels, np.clip(fp32.probs[:, 1] + rng.normal(0, 0.3, 600), 0.01, 0.99))
    never_positive = _binary(labels, np.full(600, 0.1))
    perfect = _binary(labels, np.where(labels == 1, 0.9, 0.1))
    rows = [_row("w:int8/channel in:int8/tensor", fp32, fp32), _row(LONG_LABEL, fp32, noisy),
            _row("w:nvfp4/block16", fp32, never_positive),
            _row("w:int2/tensor", perfect, never_positive)]  # sensitivity 1 -> 0: -100 pts, the widest cell
    metrics = {"n": 600, "top1": float(fp32.correct.mean()), "top5": None, "mean_confidence": 0.93, "ece": 0.03}
    return _outcome(metrics, rows)


def test_binary_tables_fit_100_columns_with_units_and_every_value_whole(binary_outcome):
    text = _render(binary_outcome)
    cells = ["fp32", "w:int8/channel", "w:nvfp4/block16", "w:int2/tensor", "+0.00", "p=1.000", "p<0.001", "no CI"]
    for row in (r.to_dict() for r in binary_outcome.simulation.formats):
        for name in ("top1", "sensitivity", "specificity", "auroc"):
            delta = row["deltas"][name]
            cells.append(f"{delta['delta'] * 100:+.2f}")
            if delta["ci"] is not None:  # None: identical AUROC rankings (int8 row), AUROC 1 vs 1/2 (int2 row)
                low, high = delta["ci"]
                cells.append(f"[{low * 100:+.2f}, {high * 100:+.2f}]")
        cells.append(f"{row['deltas']['f1']['candidate']:.4f}")
    assert "[-100.00, -97.54]" in text  # the -100 pts sensitivity row: 17 characters
    _assert_nothing_cut(text, cells)
    for header in ("Δtop-1", "Δsens", "Δspec", "ΔAUROC", "(pts)", "top-1", "sens", "spec", "AUROC", "F1", "(frac)",
                   "percentage points", "Newcombe", "McNemar exact", "DeLong"):
        assert header in text, header


def test_every_header_names_its_unit(binary_outcome):
    values, paired, storage = simulation_tables(binary_outcome, "t")
    for column in values.columns[1:]:
        assert str(column.header).endswith("(frac)"), column.header
    for column in paired.columns[1:]:
        assert str(column.header).startswith("Δ") and str(column.header).endswith("(pts)"), column.header
    assert [str(c.header) for c in storage.columns[1:]] == ["bits per\nweight", "size\n(KB)", "compliant"]


def test_the_unit_line_of_a_binary_interval_is_the_fraction_times_100():
    labels = np.array([1] * 50 + [0] * 50)
    fp32 = _binary(labels, np.where(labels == 1, 0.8, 0.2))
    worse = _binary(labels, np.where(np.arange(100) < 10, 0.3, fp32.probs[:, 1]))  # 10 positives missed
    row = _row("fmt", fp32, worse)
    assert row["deltas"]["sensitivity"]["delta"] == pytest.approx(-0.2)  # 10 of 50 positives, a fraction
    text = _render(_outcome({"top1": 1.0, "top5": None, "mean_confidence": 0.8, "ece": 0.2}, [row]))
    assert "-20.00" in text and "-10.00" in text  # Δsens and Δtop-1 in points


def test_multiclass_table_has_no_binary_columns_and_reads_old_rows():
    same = Predictions(np.arange(4), np.array([0, 1, 2, 2]), np.eye(3, dtype=np.float32)[[0, 1, 2, 1]],
                       np.array(list("abcd")))
    row = _row(LONG_LABEL, same, same)
    old = {k: v for k, v in row.items() if k not in ("deltas", "confidence")}  # a row written before deltas
    old["label"] = "old"
    text = _render(_outcome({"top1": 0.75, "top5": None, "mean_confidence": 1.0, "ece": 0.25}, [row, old]))
    assert "Δsens" not in text and "ΔAUROC" not in text and "top-5" in text
    low, high = row["top1_delta_ci"]
    _assert_nothing_cut(text, ["0.7500", "+0.00", f"[{low * 100:+.2f}, {high * 100:+.2f}]", "old"])


@pytest.mark.parametrize("binary", [True, False])
def test_fp32_metrics_table_fits_100_columns_and_names_units(binary):
    from quantlens.report.tables import metrics_table

    values = {"n": 624, "top1": 0.8638, "top5": None, "macro_precision": 0.9, "macro_recall": 0.8, "macro_f1": 0.85,
              "auroc": 0.9718, "mean_confidence": 0.9, "ece": 0.05, "nll": 0.3, "per_class": {}, "confusion_matrix": []}
    if binary:
        values.update(positive_class="pneumonia", sensitivity=0.997, specificity=0.641)
    evaluation = EvaluationResult("test", "official", ClassificationMetrics.from_dict(values), {})
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(metrics_table(evaluation, "compact_cnn on medmnist:pneumoniamnist.npz"))
    text = console.export_text()
    _assert_nothing_cut(text, ["0.8638", "0.9718"] + (["0.9970", "0.6410"] if binary else []))
    assert "(frac" in text and "(images)" in text
