"""The simulation stage: every `quantization:` entry against FP32 on the same samples;
`quantization/summary.json` (each format's own files are in `quantization/<NN-label>/`)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import ClassVar

from quantlens.experiments.simulation import (
    SUMMARY_KEYS,
    SelectionSamples,
    deploy_chosen,
    run_simulations,
)
from quantlens.experiments.stages.base import STAGES, RunContext, Stage
from quantlens.metrics.classification import classification_metrics
from quantlens.metrics.compression import compression_stats
from quantlens.metrics.fidelity import FP32_FIDELITY, LOWER_IS_BETTER
from quantlens.train import predict


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
    selection_value: float | None = None  # the entry's `selection.metric` on the selection split
    deployed: list | None = None  # per runtime: `experiments.deployment.DeployedRow` as a dict
    mx_clipped_weight_blocks: float | None = None  # MX: mean fraction of weight blocks whose maximum is clipped
    mx_clipped_input_blocks: float | None = None  # ... and of input blocks (on the compliance samples)

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
    selection: dict | None = None  # metric, n, fp32 (its value there), chosen (a label), rule
    fp32_deployed: list | None = None  # per runtime a recipe was deployed on: FP32's top1, latency, size

    def to_dict(self) -> dict:
        return {"fp32": self.fp32, "formats": [row.to_dict() for row in self.formats], "selection": self.selection,
                "fp32_deployed": self.fp32_deployed}

    @classmethod
    def from_dict(cls, data: dict) -> SimulationSummary:
        return cls(data["fp32"], tuple(FormatRow.from_dict(row) for row in data["formats"]), data.get("selection"),
                   data.get("fp32_deployed"))

    @property
    def chosen(self) -> FormatRow | None:
        """The recipe chosen on the selection split (its figures are the confirmation split's)."""
        if self.selection is None:
            return None
        return next(row for row in self.formats if row.label == self.selection["chosen"])


def choose(rows: tuple[FormatRow, ...], metric: str, n: int, fp32_value: float | None) -> dict:
    """The selection record: the entry with the best `metric` on the selection split (the first on ties);
    best is the lowest for `kl`, else the highest."""
    scored = [row for row in rows if row.selection_value is not None]
    lowest = metric in LOWER_IS_BETTER
    sign = -1.0 if lowest else 1.0
    best = max(scored, key=lambda row: sign * row.selection_value)  # max keeps the first of equal values
    what = {"agreement": "top-1 agreement with FP32", "kl": "KL divergence from FP32's outputs"}.get(metric, metric)
    return {"metric": metric, "n": n, "fp32": fp32_value, "chosen": best.label,
            "rule": f"{'lowest' if lowest else 'highest'} {what} on the selection split; its reported figures "
                    f"are the evaluation split's"}




def _selection_samples(ctx: RunContext) -> tuple[SelectionSamples | None, float | None]:
    """FP32 on the selection split (and its metric value), when the run has one."""
    if ctx.selection_idx is None:
        return None, None
    spec = ctx.spec
    reference = predict(ctx.setup.evaluation_model, ctx.data, ctx.selection_idx, spec.eval.batch_size,
                        description="FP32 on the selection split")
    metrics = classification_metrics(reference, ctx.source.class_names, positive_class=spec.eval.positive_class,
                                     ece_bins=spec.eval.ece_bins)
    fp32_value = FP32_FIDELITY.get(spec.selection.metric, metrics.get(spec.selection.metric))
    return SelectionSamples(ctx.selection_idx, reference, spec.selection.metric), fp32_value


def simulate(ctx: RunContext) -> SimulationSummary:
    reference = ctx.results["eval"]
    selection, fp32_selection = _selection_samples(ctx)
    results = run_simulations(ctx.spec, ctx.setup.model, ctx.data, ctx.eval_idx, ctx.calib_idx,
                              ctx.shared["fp32_predictions"], ctx.record, selection)
    fp32 = {k: getattr(reference.metrics, k) for k in SUMMARY_KEYS}
    fp32["model_bytes"] = compression_stats(ctx.setup.model)["model_bytes"]
    rows = tuple(FormatRow.from_dict(r.row()) for r in results)
    chosen = None if selection is None else choose(rows, selection.metric, len(selection.indices), fp32_selection)
    if chosen is not None and ctx.spec.selection.deploy:
        index = next(i for i, row in enumerate(rows) if row.label == chosen["chosen"])
        if not rows[index].deployed:  # an entry with its own `deploy:` already was
            deployed = deploy_chosen(ctx.spec, ctx.setup.model, ctx.data, ctx.eval_idx, ctx.calib_idx,
                                     ctx.shared["fp32_predictions"], ctx.record, index, rows[index].folder)
            rows = (*rows[:index], replace(rows[index], deployed=deployed), *rows[index + 1:])
    runtimes = tuple(dict.fromkeys(d["runtime"] for row in rows for d in row.deployed or ()))
    if runtimes:
        from quantlens.experiments.deployment import deploy_fp32  # noqa: PLC0415  (ONNX only when deploying)
    fp32_deployed = deploy_fp32(ctx.setup.model, runtimes, ctx.spec, ctx.data, ctx.eval_idx,
                                ctx.shared["fp32_predictions"], ctx.record) if runtimes else None
    return SimulationSummary(fp32, rows, chosen, fp32_deployed)


# after evaluation: each format is paired with FP32's predictions on the same samples
STAGES.add("quantization", Stage(
    "quantization",
    order=30,
    result_type=SimulationSummary,
    file=SimulationSummary.FILE,
    enabled=lambda spec: bool(spec.quantization),
    run=simulate,
))
