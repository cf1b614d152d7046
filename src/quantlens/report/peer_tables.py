"""The peers table: other tools' own INT8 PTQ beside FP32, on the same evaluation samples and
calibrated on the same samples as quantlens's recipes. Values are fractions; deltas are
percentage points with their paired interval and McNemar p; sizes are the files on disk in KB."""

from __future__ import annotations

from rich.table import Table

from quantlens.experiments.stages.peers import PeerRow, PeerSummary
from quantlens.report.tables import _delta_cell, _fmt, _sim_table


def _kb(size: int | None) -> str:
    return "-" if size is None else f"{size / 1024:.1f}"


def _settings(row: PeerRow) -> str:
    if not row.ran:
        return row.status
    description = (row.settings or {}).get("description", "")
    return f"{description}\n{row.tool}" if row.tool else description


def peer_table(summary: PeerSummary) -> Table:
    """One row for FP32 and one per peer: top-1, Δtop-1 vs FP32 (points, interval, p), size, settings.
    A peer that did not run keeps its row, with the reason in the settings column."""
    confidence = next((row.confidence for row in summary.peers if row.ran), None)
    level = "" if confidence is None else f"{confidence:.0%} "
    caption = (f"top-1: fraction; Δ: percentage points vs FP32 on the same {summary.fp32.get('n')} samples, "
               f"{level}paired interval, McNemar exact p; size: model files on disk (KB); "
               f"calibration: {summary.calibration['source']}")
    table = _sim_table("INT8 by other tools (peers)", ["top-1\n(frac)", "Δtop-1\n(pts)", "agree\n(frac)",
                                                       "size\n(KB)", "calib\n(n)"], caption)
    table.columns[0].header = "peer"
    table.add_column("settings", overflow="fold", min_width=24)
    onnx_bytes = summary.fp32.get("onnx_file_bytes")
    table.add_row("FP32", _fmt(summary.fp32.get("top1")), "-", "-", _kb(onnx_bytes or summary.fp32.get("model_bytes")),
                  "-", "the evaluated model" + (" (size: its ONNX export)" if onnx_bytes else " (size: its weights)"))
    for row in summary.peers:
        delta = None if row.deltas is None else row.deltas.get("top1")
        table.add_row(row.name, _fmt(row.top1), _delta_cell(delta) if row.ran else "-",
                      _fmt(row.prediction_agreement), _kb(row.model_bytes), str(row.calibration_samples),
                      _settings(row))
    return table
