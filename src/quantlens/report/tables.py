"""Text tables of run results (rich tables on the terminal)."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from quantlens.experiments.record import RunRecord
from quantlens.experiments.runner import RunOutcome


def _fmt(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def metrics_table(outcome: RunOutcome, title: str) -> Table:
    m = outcome.metrics
    table = Table(title=title, title_justify="left")
    columns = ["split", "n", "top1", "top5", "macro F1", "AUROC", "ECE", "mean conf"]
    values = [outcome.split, m["n"], m["top1"], m["top5"], m["macro_f1"], m["auroc"], m["ece"], m["mean_confidence"]]
    if "sensitivity" in m:
        columns += ["sensitivity", "specificity"]
        values += [m["sensitivity"], m["specificity"]]
    for c in columns:
        table.add_column(c, justify="right")
    table.add_row(*(_fmt(v) for v in values))
    return table


def cross_validation_table(cv: dict) -> Table:
    table = Table(title=f"{cv['folds']}-fold cross-validation (validation folds)", title_justify="left")
    table.add_column("metric")
    table.add_column("mean", justify="right")
    table.add_column("std", justify="right")
    for metric, s in cv["val_mean_std"].items():
        table.add_row(metric, _fmt(s["mean"]), _fmt(s["std"]))
    return table


def simulation_table(outcome: RunOutcome, title: str) -> Table:
    """FP32 and every simulated format side by side, with the paired difference and its interval."""
    m = outcome.metrics
    table = Table(title=title, title_justify="left")
    for column in ("format", "top1", "delta top1 [95% CI]", "McNemar p", "top5", "mean conf", "ECE", "agree",
                   "bits/w", "size KB", "compliant"):
        table.add_column(column, justify="left" if column == "format" else "right")
    rows = outcome.extras["quantization"]
    fp32_kb = rows[0]["fp32_bytes"] / 1024 if rows else 0.0
    table.add_row("fp32", _fmt(m["top1"]), "-", "-", _fmt(m["top5"]), _fmt(m["mean_confidence"]), _fmt(m["ece"]),
                  "-", "32", f"{fp32_kb:.1f}", "-")
    for row in rows:
        low, high = row["top1_delta_ci"]
        delta = f"{row['top1_delta'] * 100:+.2f} [{low * 100:+.2f}, {high * 100:+.2f}]"
        compliant = "-" if row["compliant"] is None else ("yes" if row["compliant"] else
                                                          f"NO ({row['compliance_violations']})")
        table.add_row(row["label"], _fmt(row["top1"]), delta, _fmt(row["mcnemar_p"], 3), _fmt(row["top5"]),
                      _fmt(row["mean_confidence"]), _fmt(row["ece"]), _fmt(row["prediction_agreement"]),
                      _fmt(row["bits_per_weight"], 2), f"{row['model_bytes'] / 1024:.1f}", compliant)
    return table


def write_text_summary(record: RunRecord, outcome: RunOutcome) -> None:
    """`summary.txt` in the run folder: the tables the terminal showed, as plain text."""
    console = Console(record=True, width=160, file=io.StringIO())
    if "cross_validation" in outcome.extras:
        console.print(cross_validation_table(outcome.extras["cross_validation"]))
    if outcome.metrics:
        console.print(metrics_table(outcome, "FP32"))
    if "quantization" in outcome.extras:
        console.print(simulation_table(outcome, "simulated formats vs FP32 (paired; McNemar exact test)"))
    text = console.export_text()
    if text.strip():
        record.write_text("summary.txt", text)
