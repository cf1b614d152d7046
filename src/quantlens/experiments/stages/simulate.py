"""The simulation stage: every `quantization:` entry against FP32 on the same samples;
`quantization/summary.json` (each format's own files are in `quantization/<NN-label>/`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

from quantlens.experiments.simulation import SUMMARY_KEYS, run_simulations
from quantlens.experiments.stages.base import STAGES, RunContext, Stage
from quantlens.metrics.compression import compression_stats


@dataclass(frozen=True)
class FormatRow:
    """One simulated format beside FP32. Values and deltas are fractions (`unit`); `deltas` holds each
    paired delta by metric (top1; for binary tasks sensitivity, specificity, auroc, f1) with its
    interval, p-value and methods, as `metrics.paired.PairedDelta.to_dict` writes them."""

    label: str
    folder: str  # relative to quantization/
    top1: float
    top5: float | None
    mean_confidence: float
    ece: float
    auroc: float | None
    macro_f1: float
    sensitivity: float | None
    specificity: float | None
    unit: str
    confidence: float
    top1_delta: float
    top1_delta_ci: list
    top1_delta_method: str
    mcnemar_p: float
    mcnemar_midp: float
    prediction_agreement: float
    positive_class: int | None
    deltas: dict
    compliant: bool | None
    compliance_violations: int | None
    bits_per_weight: float | None
    model_bytes: int
    fp32_bytes: int
    reduction_vs_fp32: float
    quantized_layers: int

    def delta(self, metric: str) -> dict | None:
        """The paired delta of `metric` ("top1", "sensitivity", ...), or None when not computed."""
        return self.deltas.get(metric)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> FormatRow:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})


@dataclass(frozen=True)
class SimulationSummary:
    """FP32's figures and every format's row, in the order of the `quantization:` entries."""

    FILE: ClassVar[str] = "quantization/summary.json"

    fp32: dict  # top1, top5, mean_confidence, ece, auroc, macro_f1, model_bytes
    formats: tuple[FormatRow, ...]

    def to_dict(self) -> dict:
        return {"fp32": self.fp32, "formats": [row.to_dict() for row in self.formats]}

    @classmethod
    def from_dict(cls, data: dict) -> SimulationSummary:
        return cls(data["fp32"], tuple(FormatRow.from_dict(row) for row in data["formats"]))




def simulate(ctx: RunContext) -> SimulationSummary:
    reference = ctx.results["eval"]
    results = run_simulations(ctx.spec, ctx.setup.model, ctx.data, ctx.eval_idx, ctx.calib_idx,
                              ctx.shared["fp32_predictions"], ctx.record)
    fp32 = {k: getattr(reference.metrics, k) for k in SUMMARY_KEYS}
    fp32["model_bytes"] = compression_stats(ctx.setup.model)["model_bytes"]
    return SimulationSummary(fp32, tuple(FormatRow.from_dict(r.row()) for r in results))


# after evaluation: each format is paired with FP32's predictions on the same samples
STAGES.add("quantization", Stage(
    "quantization",
    order=30,
    result_type=SimulationSummary,
    file=SimulationSummary.FILE,
    enabled=lambda spec: bool(spec.quantization),
    run=simulate,
))
