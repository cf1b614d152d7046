"""Text tables of run results (rich tables on the terminal)."""

from __future__ import annotations

import io

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from quantlens.experiments.record import RunRecord
from quantlens.experiments.runner import RunOutcome
from quantlens.experiments.stages import CrossValidationResult, EvaluationResult, FormatRow, SimulationSummary
from quantlens.metrics.classification import ClassificationMetrics


def _fmt(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def positive_class_name(metrics: ClassificationMetrics) -> str | None:
    """'pneumonia (index 1)' for a binary task, else None. The index is the class's place in
    `per_class`, which lists the classes in their order."""
    if not metrics.binary:
        return None
    names = list(metrics.per_class)
    index = f" (index {names.index(metrics.positive_class)})" if metrics.positive_class in names else ""
    return f"{metrics.positive_class}{index}"


def metrics_table(evaluation: EvaluationResult, title: str) -> Table:
    """FP32's metrics; every value a fraction in [0, 1], as the caption says."""
    m = evaluation.metrics
    caption = "frac: fractions in [0, 1]" + ("; sens/spec: sensitivity and specificity of the positive class"
                                             if m.binary else "")
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    columns = ["split", "n\n(images)", "top-1\n(frac)", "top-5\n(frac)", "macro F1\n(frac)", "AUROC\n(frac)",
               "ECE\n(frac)", "mean conf\n(frac)"]
    values = [evaluation.split, m.n, m.top1, m.top5, m.macro_f1, m.auroc, m.ece, m.mean_confidence]
    if m.binary:
        columns += ["sens\n(frac)", "spec\n(frac)"]
        values += [m.sensitivity, m.specificity]
    for c in columns:
        table.add_column(c, justify="right")
    table.add_row(*(_fmt(v) for v in values))
    return table


def metrics_view(evaluation: EvaluationResult, title: str) -> Group:
    """`metrics_table` and, for a binary task, the line naming its positive class, e.g.
    'positive class: pneumonia (index 1)' (a line of its own: a caption would wrap it)."""
    name = positive_class_name(evaluation.metrics)
    return Group(metrics_table(evaluation, title), *([Text(f"positive class: {name}")] if name else []))


def cross_validation_table(cv: CrossValidationResult) -> Table:
    table = Table(title=f"{cv.folds}-fold cross-validation (validation folds)", title_justify="left",
                  caption="fractions in [0, 1]; std over folds", caption_justify="left")
    table.add_column("metric")
    table.add_column("mean", justify="right")
    table.add_column("std", justify="right")
    for metric, s in cv.val_mean_std.items():
        table.add_row(metric, _fmt(s["mean"]), _fmt(s["std"]))
    return table


# The simulated-format comparison is three narrow tables rather than one wide one: fractions,
# paired differences in percentage points (each cell: delta, interval, p on three lines), and
# storage. One table with all of them needs ~130 columns; each of these fits 100.
# Headers put the unit on a second line, so a column is as wide as its numbers, not its name.
_DELTA_METRICS = (("top1", "Δtop-1\n(pts)"), ("sensitivity", "Δsens\n(pts)"), ("specificity", "Δspec\n(pts)"),
                  ("auroc", "ΔAUROC\n(pts)"))


def _sim_table(title: str, headers: list[str], caption: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    # Format labels are long single words ("w:fp8_e4m3/channel"): folded, never cut short.
    table.add_column("format", overflow="fold", min_width=12)
    for header in headers:
        table.add_column(header, justify="right", no_wrap=True)
    return table


def _pts(fraction: float) -> str:
    return f"{fraction * 100:+.2f}"


def _p(p_value: float | None) -> str:
    return "p n/a" if p_value is None else "p<0.001" if p_value < 0.001 else f"p={p_value:.3f}"


def _delta_cell(delta: dict | None) -> str:
    """A record's paired delta (fractions) as 'Δ / [low, high] / p' in percentage points."""
    if delta is None or delta["delta"] is None:
        return "n/a"
    if delta["ci"] is None:
        interval = "no CI"  # the record's note says why (e.g. a DeLong variance of 0)
    else:
        low, high = delta["ci"]
        interval = f"[{_pts(low)}, {_pts(high)}]"
    lines = [_pts(delta["delta"]), interval, _p(delta["p_value"])]
    return "\n".join(lines)


def _deltas(row: FormatRow) -> dict:
    """The row's paired deltas by metric; rows written before `deltas` existed give top-1 only."""
    if row.deltas:
        return row.deltas
    return {"top1": {"delta": row.top1_delta, "ci": row.top1_delta_ci, "p_value": row.mcnemar_p}}


def simulation_tables(outcome: RunOutcome, title: str) -> list[Table]:
    """FP32 and every simulated format: values (fractions), paired differences vs FP32
    (percentage points, interval, p) and storage. Binary tasks add sensitivity, specificity,
    AUROC and F1 values and the sensitivity, specificity and AUROC deltas beside top-1's."""
    m, rows = outcome.evaluation.metrics, outcome.simulation.formats
    binary = any("sensitivity" in _deltas(row) for row in rows)
    fp32 = {name: d["reference"] for name, d in _deltas(rows[0]).items()} if rows and binary else {}

    value_keys = (["top1", "sensitivity", "specificity", "auroc", "f1"] if binary else ["top1", "top5"]) \
        + ["mean_confidence", "ece", "prediction_agreement"]
    names = {"top1": "top-1", "top5": "top-5", "sensitivity": "sens", "specificity": "spec", "auroc": "AUROC",
             "f1": "F1", "mean_confidence": "mean conf", "ece": "ECE", "prediction_agreement": "agree"}
    values = _sim_table(title, [f"{names[k]}\n(frac)" for k in value_keys],
                        caption="frac: fractions in [0, 1]; agree: share of samples where the format predicts "
                                "FP32's class" + (f"; sens, spec, F1: of the positive class, {positive_class_name(m)}"
                                                  if binary and m.binary else ""))
    reference = {**{k: getattr(m, k, None) for k in value_keys}, **fp32, "prediction_agreement": None}
    values.add_row("fp32", *(_fmt(reference[k]) for k in value_keys))
    for row in rows:
        deltas = _deltas(row)
        # F1 of the positive class is only in the paired record (the row's macro_f1 averages both classes).
        values.add_row(row.label, *(_fmt(deltas[k]["candidate"] if k == "f1" else getattr(row, k)) for k in value_keys))

    shown = [(k, header) for k, header in _DELTA_METRICS if binary or k == "top1"]
    confidence = (rows[0].confidence or 0.95) if rows else 0.95
    caption = (f"Δ = format - FP32 in percentage points (pts), then its {confidence:.0%} interval and p. "
               "top-1" + (", sens, spec" if binary else "") + ": Newcombe (1998) hybrid score interval, "
               "McNemar exact p" + ("; AUROC: DeLong (1988); ΔF1 (bootstrap) in summary.json" if binary else ""))
    paired = _sim_table("paired differences vs FP32 (same samples)", [h for _, h in shown], caption=caption)
    for row in rows:
        deltas = _deltas(row)
        paired.add_row(row.label, *(_delta_cell(deltas.get(k)) for k, _ in shown))

    mx = any(row.mx_clipped_weight_blocks is not None or row.mx_clipped_input_blocks is not None for row in rows)
    storage = _sim_table("storage and format compliance", ["bits per\nweight", "size\n(KB)", "compliant",
                                                           *(["MX clipped\nblocks w/in"] if mx else [])],
                         caption="MX clipped blocks: mean fraction of weight / input blocks whose maximum the "
                                 "shared-scale rule clips" if mx else None)
    fp32_kb = rows[0].fp32_bytes / 1024 if rows else 0.0
    storage.add_row("fp32", "32", f"{fp32_kb:.1f}", "-", *(["-"] if mx else []))
    for row in rows:
        compliant = "-" if row.compliant is None else ("yes" if row.compliant else
                                                       f"NO ({row.compliance_violations})")
        clipped = [f"{_fmt(row.mx_clipped_weight_blocks, 3)} / {_fmt(row.mx_clipped_input_blocks, 3)}"] if mx else []
        storage.add_row(row.label, _fmt(row.bits_per_weight, 2), f"{row.model_bytes / 1024:.1f}", compliant,
                        *clipped)
    tables = [values, paired, storage]
    if any(row.deployed for row in rows):
        tables.append(deployed_table(rows, binary, outcome.simulation.fp32_deployed))
    if outcome.simulation.selection is not None:
        tables.append(selection_table(outcome.simulation))
    return tables


def deployed_table(rows: tuple[FormatRow, ...], binary: bool, fp32_deployed: list | None = None) -> Table:
    """Recipes deployed with quantlens's own scales: the runtime's figures on the same samples, paired
    with FP32 and with the simulation that predicted them."""
    metrics = [("top1", "Δtop-1"), *((("sensitivity", "Δsens"), ("specificity", "Δspec"), ("auroc", "ΔAUROC"))
                                     if binary else ())]
    table = _sim_table("deployed with quantlens's scales (same samples)",
                       ["runtime", "top-1\n(frac)", *(f"{h} vs\nFP32 (pts)" for _, h in metrics),
                        "Δtop-1 vs\nsim (pts)", "agree\nw/ sim", "agree w/\nfaithful", "latency\n(ms)",
                        "size\n(KB)"],
                       caption="vs sim: deployed - simulated on the same samples (Newcombe interval, McNemar p); "
                               "agree: share of samples with the fake-quant simulation's class, and with the "
                               "simulation of the runtime's own arithmetic (- where none is modelled); fp32: the "
                               "float model on the same runtime; latency: median ± half the IQR of timed runs at "
                               "the batch shown; size: the file on disk (- in memory)")
    for d in fp32_deployed or ():  # the float model's ONNX file on the same runtime: the latency reference
        table.add_row("fp32", d["runtime"], _fmt(d["top1"]), *("-" for _ in metrics), "-", "-", "-",
                      _latency_cell(d), _size_cell(d))
    for row in rows:
        for d in row.deployed or ():
            vs_sim = {"delta": d["vs_simulated_delta"], "ci": d["vs_simulated_ci"], "p_value": d["vs_simulated_p"]}
            table.add_row(row.label, f"{d['runtime']}\n{d.get('artefact', 'ONNX QDQ')}", _fmt(d["top1"]),
                          *(_delta_cell(d["deltas"].get(k)) for k, _ in metrics), _delta_cell(vs_sim),
                          _fmt(d["agreement_with_simulated"]), _fmt(d.get("agreement_with_faithful")),
                          _latency_cell(d), _size_cell(d))
    return table


def _size_cell(d: dict) -> str:
    return "-" if d.get("size_bytes") is None else f"{d['size_bytes'] / 1024:.1f}"  # None: in memory, no file


def _latency_cell(d: dict) -> str:
    return f"{d['latency_ms']:.1f}\n±{d['latency_iqr_ms'] / 2:.1f}\nbatch {d['latency_batch']}"


def selection_table(summary: SimulationSummary) -> Table:
    """Each recipe's score on the selection split, and the one chosen there (its reported figures,
    in the tables above, come from the evaluation split, which the choice never saw)."""
    sel = summary.selection
    table = _sim_table(f"choice of recipe on the selection split ({sel['n']} samples, disjoint from the above)",
                       [f"{sel['metric']}\n({'nats' if sel['metric'] == 'kl' else 'frac'})", "chosen"],
                       caption=f"rule: {sel['rule']}")
    digits = 5 if sel["metric"] == "kl" else 4  # KL of close models is a few thousandths of a nat
    table.add_row("fp32", _fmt(sel["fp32"], digits), "")
    for row in summary.formats:
        table.add_row(row.label, _fmt(row.selection_value, digits), "<- chosen" if row.label == sel["chosen"] else "")
    return table


def simulation_table(outcome: RunOutcome, title: str) -> Group:
    """`simulation_tables` as one printable renderable."""
    return Group(*simulation_tables(outcome, title))


def write_text_summary(record: RunRecord, outcome: RunOutcome) -> None:
    """`summary.txt` in the run folder: the tables the terminal showed, as plain text."""
    console = Console(record=True, width=160, file=io.StringIO())
    if outcome.training is not None and outcome.training.cross_validation is not None:
        console.print(cross_validation_table(outcome.training.cross_validation))
    if outcome.evaluation is not None:
        console.print(metrics_view(outcome.evaluation, "FP32"))
    if outcome.simulation is not None:
        console.print(simulation_table(outcome, "simulated formats vs FP32 (same samples)"))
    if outcome.peers is not None:
        from quantlens.report.peer_tables import peer_table  # noqa: PLC0415  (it imports these helpers)

        console.print(peer_table(outcome.peers))
    text = console.export_text()
    if text.strip():
        record.write_text("summary.txt", text)
