"""The peers stage: other tools' own INT8 post-training quantization (ONNX Runtime MinMax / Entropy /
Percentile, NNCF on OpenVINO, torch's x86 FX flow) of the same model, calibrated on the same samples
as quantlens's recipes and paired with FP32 on the evaluation samples; `peers/summary.json` (each
peer's own files are in `peers/<name>/`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

from quantlens.environment import usable_cores
from quantlens.experiments.peers import peer_calibration, run_peers
from quantlens.experiments.simulation import SUMMARY_KEYS
from quantlens.experiments.stages.base import STAGES, RunContext, Stage
from quantlens.metrics.compression import compression_stats


@dataclass(frozen=True)
class PeerRow:
    """One peer beside FP32. `status` is "ok" or "not run: <reason>" (then the figures are None).
    Values and deltas are fractions (`unit`); `deltas` holds each paired delta by metric with its
    interval, p-value and methods (`metrics.paired.PairedDelta.to_dict`); `model_bytes` is the size on
    disk of the files the peer wrote (`files`: path relative to the run folder, bytes, sha256)."""

    name: str
    status: str
    calibration_samples: int
    tool: str | None = None
    folder: str | None = None
    n: int | None = None
    top1: float | None = None
    top5: float | None = None
    mean_confidence: float | None = None
    ece: float | None = None
    auroc: float | None = None
    macro_f1: float | None = None
    unit: str | None = None
    confidence: float | None = None
    top1_delta: float | None = None
    top1_delta_ci: list | None = None
    mcnemar_p: float | None = None
    mcnemar_midp: float | None = None
    prediction_agreement: float | None = None
    deltas: dict | None = None
    model_bytes: int | None = None
    files: list | None = None
    settings: dict | None = None
    quantize_seconds: float | None = None  # wall-clock time of the peer's quantization (calibration included)

    @property
    def ran(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> PeerRow:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class PeerSummary:
    """FP32's figures, the calibration samples every peer saw, and each peer's row in `peers:` order."""

    FILE: ClassVar[str] = "peers/summary.json"

    fp32: dict  # top1, top5, mean_confidence, ece, auroc, macro_f1 (fractions), n, model_bytes (weights),
    # onnx_file_bytes (its verified ONNX export on disk, when a peer exported it; else None)
    calibration: dict  # n, source (one line), indices
    peers: tuple[PeerRow, ...]

    def to_dict(self) -> dict:
        return {"fp32": self.fp32, "calibration": self.calibration, "peers": [row.to_dict() for row in self.peers]}

    @classmethod
    def from_dict(cls, data: dict) -> PeerSummary:
        return cls(data["fp32"], data["calibration"], tuple(PeerRow.from_dict(row) for row in data["peers"]))


def peers(ctx: RunContext) -> PeerSummary:
    reference = ctx.results["eval"]
    fp32 = {k: getattr(reference.metrics, k) for k in SUMMARY_KEYS}
    fp32["n"] = len(ctx.eval_idx)
    fp32["model_bytes"] = compression_stats(ctx.setup.model)["model_bytes"]
    # the spec requires a quantization entry beside peers, so the run has calibration samples
    calibration = peer_calibration(ctx.spec, ctx.calib_idx)
    rows = run_peers(ctx.spec, ctx.setup.model, ctx.data, ctx.eval_idx, calibration,
                     ctx.shared["fp32_predictions"], ctx.record, usable_cores())
    exports = sorted(ctx.record.path("peers/onnx").glob("model-*.onnx"))  # the FP32 file ORT and NNCF started from
    fp32["onnx_file_bytes"] = exports[0].stat().st_size if exports else None
    return PeerSummary(fp32, {"n": len(calibration.indices), "source": calibration.source,
                              "indices": [int(i) for i in calibration.indices]},
                       tuple(PeerRow.from_dict(row) for row in rows))


# after the simulated recipes (order 30), before the benchmark: paired with FP32's predictions
STAGES.add("peers", Stage(
    "peers",
    order=35,
    result_type=PeerSummary,
    file=PeerSummary.FILE,
    enabled=lambda spec: bool(spec.peers) and spec.eval.enabled,
    run=peers,
))
