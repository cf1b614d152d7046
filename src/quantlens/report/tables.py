"""Text tables of run results (rich tables on the terminal)."""

from __future__ import annotations

from rich.table import Table

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
