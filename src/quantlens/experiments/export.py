"""`quantlens export`: one recipe, calibrated on the experiment's calibration samples, written as an
ONNX QDQ file with quantlens's own scales (the runtime never re-calibrates).

The recipe is the spec's single `quantization:` entry. Calibration samples are chosen exactly as a
run would choose them (never from the evaluation samples). Everything that can be refused (the
weights, the data, a format ONNX Runtime cannot execute, a pattern that matches no layer) is
refused before the calibration starts; the file is written atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from quantlens.atomic import write_json
from quantlens.backends.qdq import FusionReport, QdqExport, check_deployable, export_qdq, ort_fusion
from quantlens.data import PreparedData, load_source
from quantlens.errors import ConfigError, QuantlensError, naming_field
from quantlens.experiments.check import check_weights
from quantlens.experiments.sampling import (
    calibration_indices,
    checkpoint_split,
    eval_indices,
    holdout,
    three_way_split,
)
from quantlens.experiments.setup import prepare_model
from quantlens.experiments.simulation import calibration_choice, plan_simulations
from quantlens.experiments.spec import ExperimentSpec
from quantlens.workflows import post_training_quantize


@dataclass(frozen=True)
class ExportOutcome:
    export: QdqExport
    fusion: FusionReport  # what ONNX Runtime runs in integer kernels
    calibration_samples: int
    passes: list

    @property
    def details_path(self) -> Path:
        return self.export.path.with_suffix(".json")

    def write_details(self) -> None:
        """The export, what ONNX Runtime fused, the calibration and the passes, beside the .onnx file."""
        write_json(self.details_path, {"export": self.export.to_dict(), "ort_fusion": self.fusion.to_dict(),
                                       "calibration_samples": self.calibration_samples, "passes": self.passes})

    def summary(self) -> list[str]:
        """What was written and what ONNX Runtime runs in integer kernels, one line each."""
        export, fusion = self.export, self.fusion
        counts = ", ".join(f"{k} {v}" for k, v in sorted(fusion.op_counts.items()))
        return [f"wrote {export.path} ({export.size_bytes / 1024:.1f} KB, sha256 {export.sha256})",
                f"{export.int8_weights} integer weight tensors, {export.quantize_nodes} QuantizeLinear, "
                f"calibrated on {self.calibration_samples} samples",
                f"ONNX Runtime runs {len(fusion.integer_layers)} layers in integer kernels ({counts}); "
                f"in float: {', '.join(fusion.float_layers) or 'none'}",
                f"details: {self.details_path}"]


def _calibration(spec: ExperimentSpec, source, setup, root: Path):
    needs_split = spec.train.enabled or spec.eval.split in ("train", "val", "test")
    split = holdout(spec, source, root) if needs_split else None
    trained_on = checkpoint_split(spec, source, setup, root)
    _, indices, _ = eval_indices(spec, source, split, trained_on)
    if spec.selection.enabled:
        return three_way_split(spec, source, indices)[0]
    return calibration_indices(spec, source, split, trained_on, indices)[0]


def export_recipe(spec: ExperimentSpec, out: Path, work_root: Path) -> ExportOutcome:
    """Calibrate `spec.quantization[0]` on `spec.model` and write it to `out` (an .onnx path)."""
    if len(spec.quantization) != 1:
        raise ConfigError(f"quantization: export takes exactly one recipe, got {len(spec.quantization)}")
    if spec.train.enabled:
        raise ConfigError("train.enabled: export quantizes a trained checkpoint (model.weights); train it first")
    cfg = spec.quantization[0]
    check_weights(spec)
    try:
        source = load_source(spec.data.source)
    except QuantlensError as exc:
        raise naming_field("data.source", exc) from None
    setup = prepare_model(spec, source)
    planned = plan_simulations(spec, setup.model)
    try:
        check_deployable(planned.plans[0].layers)
    except QuantlensError as exc:
        raise ConfigError(f"quantization.0 ({cfg.label}): {exc}") from None
    data = PreparedData.from_source(source, setup.preprocessing)
    chosen = calibration_choice(_calibration(spec, source, setup, work_root), cfg)
    outcome = post_training_quantize(
        planned.modular.model, cfg, lambda: (x for x, _, _ in data.batches(chosen, cfg.calibration_batch_size)),
        batch_size=cfg.calibration_batch_size)
    example = next(x for x, _, _ in data.batches(chosen[:2], 2))
    export = export_qdq(outcome.model.eval().cpu(), example, out)
    return ExportOutcome(export, ort_fusion(export.path), outcome.calibration_samples, outcome.passes)
