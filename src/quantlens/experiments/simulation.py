"""Simulated quantization inside an experiment: each format against FP32 on the same samples.

For every `quantization:` entry: convert the float model (a copy), calibrate static ranges on
calibration samples that are never evaluated, evaluate on the evaluation samples, and record
side by side with FP32: accuracy with a paired significance test, top-5, certainty, calibration
error, format compliance of every quantized tensor, layer-wise error and storage size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from quantlens import events
from quantlens.atomic import read_json
from quantlens.data import PreparedData
from quantlens.devices import module_device
from quantlens.errors import ConfigError, QuantlensError
from quantlens.experiments.record import RunRecord
from quantlens.experiments.spec import ExperimentSpec
from quantlens.metrics.classification import Predictions, classification_metrics
from quantlens.metrics.compression import compression_stats
from quantlens.metrics.fidelity import FIDELITY_METRICS, fidelity
from quantlens.metrics.layerwise import layerwise_errors, layerwise_record, layerwise_table
from quantlens.metrics.mx_clipping import mx_clipping
from quantlens.metrics.paired import paired_comparison
from quantlens.models.build import ModelRef
from quantlens.nn import clear_recordings, quant_wrappers, recording
from quantlens.nn.compliance import check_compliance
from quantlens.passes import functional_to_modules
from quantlens.passes.functional_to_modules import ModularizeResult
from quantlens.recipes import ModelPlan, QuantizationConfig, plan_layers
from quantlens.train import predict
from quantlens.workflows import post_training_quantize

SUMMARY_KEYS = ("top1", "top5", "mean_confidence", "ece", "auroc", "macro_f1")


@dataclass
class SimulationResult:
    label: str
    folder: str
    metrics: dict
    paired: dict
    compliance: dict | None
    size: dict
    coverage: dict
    selection: dict | None = None  # the entry's score on the selection split (`selection.json`)
    deployed: list | None = None  # DeployedRow dicts, one per runtime (`deployed-<runtime>.json`)
    mx_clipping: dict | None = None  # MX formats: clipped-block fractions (`mx_clipping.json`)

    @classmethod
    def load(cls, folder: str | Path) -> SimulationResult:
        """One format's files (`quantization/<NN-label>/`) read back."""
        folder = Path(folder)

        def read(name: str) -> dict | None:
            path = folder / name
            return read_json(path, "simulation result") if path.is_file() else None

        metrics = read("metrics.json")
        if metrics is None:
            raise QuantlensError(f"{folder} holds no metrics.json: not a simulated format's folder")
        label, paired = metrics.pop("label"), metrics.pop("paired_vs_fp32")
        deployed = [read(p.name) for p in sorted(folder.glob("deployed-*.json"))]
        return cls(label, folder.name, metrics, paired, read("compliance.json"), read("size.json"),
                   read("coverage.json"), read("selection.json"), deployed or None, read("mx_clipping.json"))

    def row(self) -> dict:
        """One format's line of quantization/summary.json and of the report's tables. Values and
        deltas are fractions (`unit`); `deltas` holds every paired delta by metric (top1, and for
        binary tasks sensitivity, specificity, auroc, f1) with its interval, p-value and methods."""
        return {"label": self.label, "folder": self.folder, **{k: self.metrics.get(k) for k in SUMMARY_KEYS},
                "sensitivity": self.metrics.get("sensitivity"), "specificity": self.metrics.get("specificity"),
                "unit": self.paired["unit"], "confidence": self.paired["confidence"],
                "top1_delta": self.paired["top1_delta"], "top1_delta_ci": self.paired["top1_delta_ci"],
                "top1_delta_method": self.paired["top1_delta_method"],
                "mcnemar_p": self.paired["mcnemar_p"], "mcnemar_midp": self.paired["mcnemar_midp"],
                "prediction_agreement": self.paired["prediction_agreement"],
                "positive_class": self.paired["positive_class"], "deltas": self.paired["deltas"],
                "compliant": None if self.compliance is None else self.compliance["compliant"],
                "compliance_violations": None if self.compliance is None else self.compliance["violations"],
                "bits_per_weight": self.size["bits_per_quantized_weight"], "model_bytes": self.size["model_bytes"],
                "fp32_bytes": self.size["fp32_bytes"],
                "reduction_vs_fp32": self.size["reduction_vs_fp32"],
                "quantized_layers": self.coverage["quantized_layers"],
                "selection_value": None if self.selection is None else self.selection["value"],
                "deployed": self.deployed or None,
                "mx_clipped_weight_blocks": None if self.mx_clipping is None else self.mx_clipping["weights_mean"],
                "mx_clipped_input_blocks": None if self.mx_clipping is None else self.mx_clipping["inputs_mean"]}


def folder_name(index: int, label: str) -> str:
    return f"{index:02d}-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_")[:60]


def _batches(data: PreparedData, indices: np.ndarray, batch_size: int):
    return (x for x, _, _ in data.batches(indices, batch_size))


@dataclass
class SimulationPlan:
    """The model with its functional operations given modules, and each entry's per-layer plan."""

    modular: ModularizeResult
    plans: list[ModelPlan]


def plan_simulations(spec: ExperimentSpec, model: nn.Module) -> SimulationPlan:
    """Plan every `quantization:` entry on `model` as it is now (call it again after training: the
    converted model is a copy); ConfigError naming the entry's field when a pattern matches no layer
    or nothing would be quantized, so a check before any work finds it."""
    # Functional operations (x + y, torch.matmul) of user models become modules, so they are quantized too.
    modular = functional_to_modules(model)
    plans = []
    for i, cfg in enumerate(spec.quantization):
        plan = plan_layers(modular.model, cfg)
        problem = plan.problem()
        if problem is not None:
            where, why = problem
            field = f"quantization.{i}" + (f".{where}" if where else "")
            raise ConfigError(f"{field} ({cfg.label}): {why} of {spec.model.name}; a result for it would describe "
                              f"a model that is not what its label says")
        if cfg.deploy or spec.selection.deploy or cfg.simulation == "deployment":  # selection: any may be chosen
            from quantlens.experiments.deploy_targets import check_runtimes  # noqa: PLC0415  (ONNX when deploying)

            field = (f"quantization.{i}.deploy" if cfg.deploy else f"quantization.{i}.simulation"
                     if cfg.simulation == "deployment" else f"selection.deploy (quantization.{i})")
            try:
                check_runtimes(modular.model, plan.layers, cfg.deploy or spec.selection.deploy or ("onnxruntime",))
            except QuantlensError as exc:
                raise ConfigError(f"{field} ({cfg.label}): {exc}") from None
        plans.append(plan)
    return SimulationPlan(modular, plans)


def calibration_choice(calib_idx: np.ndarray, cfg: QuantizationConfig) -> np.ndarray:
    """The calibration samples of one entry: all of `calib_idx` when it holds no more than
    `calibration_samples`, else that many drawn with `calibration_seed` (in the data's order)."""
    if len(calib_idx) <= cfg.calibration_samples:
        return calib_idx
    rng = np.random.default_rng(cfg.calibration_seed)
    return np.sort(rng.choice(calib_idx, size=cfg.calibration_samples, replace=False))


@dataclass
class SelectionSamples:
    """The selection split and FP32's predictions on it (recipes are chosen there, never on eval_idx)."""

    indices: np.ndarray
    reference: Predictions
    metric: str


def _selection_score(qmodel: nn.Module, data: PreparedData, spec: ExperimentSpec, label: str,
                     selection: SelectionSamples) -> dict:
    predictions = predict(qmodel, data, selection.indices, spec.eval.batch_size,
                          description=f"selecting {label}")
    metrics = classification_metrics(predictions, data.source.class_names, positive_class=spec.eval.positive_class,
                                     ece_bins=spec.eval.ece_bins)
    paired = paired_comparison(selection.reference, predictions, confidence=spec.analysis.confidence,
                               positive_class=spec.eval.positive_class)
    close = fidelity(selection.reference, predictions)
    value = close[selection.metric] if selection.metric in FIDELITY_METRICS else metrics.get(selection.metric)
    return {"n": len(selection.indices), "metric": selection.metric, "value": value,
            "top1": metrics["top1"], "fidelity": close, "paired_vs_fp32": paired}


def _deployment_faithful(qmodel: nn.Module, data: PreparedData, calib_idx: np.ndarray, folder: str,
                         record: RunRecord) -> nn.Module:
    """`simulation: deployment`: the model as ONNX Runtime runs its QDQ export (dividing QuantizeLinear,
    exact int32 accumulators, requantization of what it fuses; `backends.qdq.faithful`)."""
    from quantlens.backends.qdq import export_qdq, faithful_model  # noqa: PLC0415  (ONNX only when asked)
    from quantlens.experiments.deploy_targets import is_dynamic  # noqa: PLC0415

    if is_dynamic(qmodel):  # dynamic ranges: ONNX Runtime's DynamicQuantizeMatMul arithmetic
        from quantlens.backends.dynamic_int8 import faithful_model as dynamic_faithful  # noqa: PLC0415

        return dynamic_faithful(qmodel, "onnxruntime")
    example = next(x for x, _, _ in data.batches(calib_idx[:2], 2))
    export = export_qdq(qmodel.eval(), example.to(module_device(qmodel)),
                        record.path(f"quantization/{folder}/model.qdq.onnx"))
    return faithful_model(qmodel, export.path, precise=None)


def simulate_one(index: int, cfg: QuantizationConfig, model: nn.Module, data: PreparedData,
                 spec: ExperimentSpec, eval_idx: np.ndarray, calib_idx: np.ndarray, reference: Predictions,
                 record: RunRecord, functional_ops: dict,
                 selection: SelectionSamples | None = None) -> SimulationResult:
    label, folder = cfg.label, folder_name(index, cfg.label)
    chosen = calibration_choice(calib_idx, cfg)
    outcome = post_training_quantize(model, cfg, lambda: _batches(data, chosen, cfg.calibration_batch_size),
                                     batch_size=cfg.calibration_batch_size)
    qmodel, plan, calibrated = outcome.model, outcome.plan, outcome.calibration_samples
    model = outcome.float_model  # layer-wise errors compare against the model the passes produced
    if outcome.passes:
        record.write_json(f"quantization/{folder}/passes.json", outcome.passes)
    evaluated = qmodel if cfg.simulation == "fake_quant" else _deployment_faithful(qmodel, data, calib_idx, folder,
                                                                                    record)
    chosen_on = None if selection is None else _selection_score(evaluated, data, spec, label, selection)
    if chosen_on is not None:
        record.write_json(f"quantization/{folder}/selection.json", chosen_on)
    predictions = predict(evaluated, data, eval_idx, spec.eval.batch_size, description=f"evaluating {label}")
    predictions.save(record.path(f"quantization/{folder}/predictions.npz"))
    metrics = classification_metrics(predictions, data.source.class_names, positive_class=spec.eval.positive_class,
                                     ece_bins=spec.eval.ece_bins)
    paired = paired_comparison(reference, predictions, confidence=spec.analysis.confidence,
                               positive_class=spec.eval.positive_class)
    deployed = []
    if cfg.deploy:
        from quantlens.experiments.deployment import deploy_recipe  # noqa: PLC0415  (ONNX only when deploying)

        deployed = [row.to_dict() for row in deploy_recipe(qmodel, cfg.deploy, folder, spec, data, eval_idx,
                                                           reference, predictions, record)]
    compliance = None
    if spec.analysis.compliance_samples:
        with recording(qmodel):
            predict(qmodel, data, eval_idx[:spec.analysis.compliance_samples], spec.eval.batch_size)
        compliance = check_compliance(qmodel).to_dict()
        clear_recordings(qmodel)
        record.write_json(f"quantization/{folder}/compliance.json", compliance)
    clipping = mx_clipping(qmodel, _batches(data, eval_idx[:max(spec.analysis.compliance_samples, 1)],
                                            spec.eval.batch_size))
    if clipping is not None:
        record.write_json(f"quantization/{folder}/mx_clipping.json", clipping)
    if spec.analysis.layerwise_samples:
        names = {name: w.kind.name for name, w in quant_wrappers(qmodel)}
        errors = layerwise_errors(model, qmodel, names,
                                  _batches(data, eval_idx[:spec.analysis.layerwise_samples], 64))
        record.write_json(f"quantization/{folder}/layerwise.json", layerwise_record(errors))
        record.write_text(f"quantization/{folder}/layerwise.txt", layerwise_table(errors) + "\n")
    size = compression_stats(qmodel)
    coverage = {"quantized_layers": len(plan.layers), "float_layers": plan.skipped,
                "unsupported_modules": plan.unsupported, "functional_ops": functional_ops,
                "calibration_samples": calibrated, "calibration_samples_requested": cfg.calibration_samples,
                "layers": {name: {role: (s.describe() if s is not None else None)
                                  for role, s in (("weights", p.weights), ("inputs", p.inputs),
                                                  ("outputs", p.outputs), ("norm", p.norm))}
                           for name, p in plan.layers.items()}}
    record.write_json(f"quantization/{folder}/config.json", cfg.model_dump(mode="json"))
    record.write_json(f"quantization/{folder}/coverage.json", coverage)
    record.write_json(f"quantization/{folder}/size.json", size)
    record.write_json(f"quantization/{folder}/metrics.json", {"label": label, **metrics, "paired_vs_fp32": paired})
    verdict = "" if compliance is None else ("compliant" if compliance["compliant"] else
                                             f"{compliance['violations']} OFF-GRID VALUES")
    events.note(f"simulated {label}: top1 {metrics['top1']:.4f} (FP32 {reference.correct.mean():.4f}), {verdict}")
    return SimulationResult(label, folder, metrics, paired, compliance, size, coverage, chosen_on, deployed,
                            clipping)


def run_simulations(spec: ExperimentSpec, model: nn.Module, data: PreparedData, eval_idx: np.ndarray,
                    calib_idx: np.ndarray, reference: Predictions, record: RunRecord,
                    selection: SelectionSamples | None = None) -> list[SimulationResult]:
    """Every `quantization:` entry of `spec`, in order; progress and findings as events."""
    planned = plan_simulations(spec, model)
    modular = planned.modular
    if modular.converted:
        events.note(f"functional operations given modules for quantization: {dict(modular.converted)}")
    elif modular.skipped and ModelRef.parse(spec.model.name).kind != "zoo":  # zoo models use op modules already
        events.warn(f"{modular.skipped}; operations written as functions stay in float")
    results = []
    with events.task("simulated formats", total=len(spec.quantization), unit="formats") as progress:
        for i, cfg in enumerate(spec.quantization, start=1):
            results.append(simulate_one(i, cfg, modular.model, data, spec, eval_idx, calib_idx, reference,
                                        record, modular.to_dict(), selection))
            progress.advance()
    return results


def deploy_chosen(spec: ExperimentSpec, model: nn.Module, data: PreparedData, eval_idx: np.ndarray,
                  calib_idx: np.ndarray, reference: Predictions, record: RunRecord, index: int,
                  folder: str) -> list[dict]:
    """Deploy entry `index` (0-based; chosen on the selection split) on `spec.selection.deploy`: the
    recipe is applied again to the same calibration samples (the same model as simulated: every step
    is deterministic) and evaluated on the evaluation split like any deployed entry."""
    from quantlens.experiments.deployment import deploy_recipe  # noqa: PLC0415  (ONNX only when deploying)

    cfg = spec.quantization[index]
    chosen = calibration_choice(calib_idx, cfg)
    modular = functional_to_modules(model)
    outcome = post_training_quantize(modular.model, cfg, lambda: _batches(data, chosen, cfg.calibration_batch_size),
                                     batch_size=cfg.calibration_batch_size)
    simulated = Predictions.load(record.path(f"quantization/{folder}/predictions.npz"))
    rows = deploy_recipe(outcome.model, spec.selection.deploy, folder, spec, data, eval_idx, reference, simulated,
                         record)
    return [row.to_dict() for row in rows]

