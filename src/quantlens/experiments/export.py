"""`quantlens export`: one recipe, calibrated on the experiment's calibration samples, written as an
ONNX QDQ file with quantlens's own scales (the runtime never re-calibrates).

The recipe is the spec's single `quantization:` entry. Calibration samples are chosen exactly as a
run would choose them (never from the evaluation samples). Everything that can be refused (the
weights, the data, a format ONNX Runtime cannot execute, a pattern that matches no layer) is
refused before the calibration starts; the file is written atomically.

A model read from an ONNX file is written with that file's interface (its input name and layout, its
output name and kind: probabilities again for a file that returns them), so the quantized file can
replace the original where it runs; the rewrite is checked on calibration images on ONNX Runtime.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from quantlens.atomic import atomic_path, write_json
from quantlens.backends.qdq import FusionReport, QdqExport, check_deployable, export_qdq, ort_fusion
from quantlens.data import PreparedData, load_source
from quantlens.errors import ConfigError, ModelError, QuantlensError, naming_field
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
from quantlens.models.onnx.interface import INPUT_NAME, OUTPUT_NAME, with_source_interface
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
                *export.notes,
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
    chosen = calibration_choice(_calibration(spec, source, setup, work_root), cfg)
    data = PreparedData.from_source(source, setup.preprocessing, chosen)
    outcome = post_training_quantize(
        planned.modular.model, cfg, lambda: (x for x, _, _ in data.batches(chosen, cfg.calibration_batch_size)),
        batch_size=cfg.calibration_batch_size)
    example = next(x for x, _, _ in data.batches(chosen[:2], 2))
    export = export_qdq(outcome.model.eval().cpu(), example, out)
    if setup.onnx is not None:
        export = _with_source_interface(export, setup.onnx, next(x for x, _, _ in data.batches(chosen[:8], 8)))
    return ExportOutcome(export, ort_fusion(export.path), outcome.calibration_samples, outcome.passes)


# The rewritten file against the file as written, on the same images: only an Exp and a Transpose differ.
INTERFACE_ATOL = 1e-5


def _with_source_interface(export: QdqExport, source, images: torch.Tensor) -> QdqExport:
    """`export`'s file rewritten in place to the interface of `source` (models.onnx.OnnxModel), checked on
    `images` (B, C, H, W): its outputs equal the written file's (exponentiated for probabilities)."""
    import onnx
    import onnxruntime as ort

    def run(path: Path, name: str, x: np.ndarray) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    file, layout, kind = source.file, source.layout, source.output.kind
    x = images.detach().float().cpu().numpy()
    written = run(export.path, INPUT_NAME, x)
    expected = np.exp(written) if kind == "probabilities" else written
    rewritten = with_source_interface(onnx.load(str(export.path)), file, layout, kind)
    with atomic_path(export.path) as tmp:
        onnx.save(rewritten, str(tmp))
        got = run(tmp, file.input.name, x.transpose(0, 2, 3, 1) if layout == "nhwc" else x)
        worst = float(np.abs(got - expected).max())
        if not worst <= INTERFACE_ATOL:
            raise ModelError(f"{file.path}: the quantized file with its interface differs from the file as written "
                             f"by {worst:.3g} (tolerance {INTERFACE_ATOL:g}); not written")
    data = export.path.read_bytes()
    note = (f"takes {file.input.name!r} {layout.upper()} and returns {kind.replace('_', '-')} as {file.output_name!r}, "
            f"as {file.path} does (checked on {len(x)} images: max |difference| {worst:.2g}); quantlens's own "
            f"interface is {INPUT_NAME!r} NCHW in, {OUTPUT_NAME!r} out")
    return replace(export, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), notes=(*export.notes, note))
