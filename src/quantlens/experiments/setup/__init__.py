"""Decide how a model meets its data: classes, channels, input size, normalisation and outputs.

Precedence for each setting: the config, then the checkpoint's sidecar (when quantlens trained
it) or the ONNX file's own metadata and input shape, then what the data and the model say.

What the model returns is declared (`model.output`) or, for models from outside the zoo, detected
on a few real samples; a model returning probabilities is made to return their log, so that the
softmax every evaluation applies gives them back unchanged (`quantlens.train.outputs`).

An ONNX file runs as it is on ONNX Runtime when the run only evaluates it; a run that quantizes,
benchmarks or compares it gets its PyTorch form (onnx2torch), verified against ONNX Runtime.
"""

from __future__ import annotations

from quantlens.data.source import ImageSource
from quantlens.experiments.setup.base import PROBE_SAMPLES, Setup, needs_torch_form
from quantlens.experiments.setup.memory import check_memory
from quantlens.experiments.setup.onnx import prepare_onnx
from quantlens.experiments.setup.pytorch import prepare_torch
from quantlens.experiments.spec import ExperimentSpec
from quantlens.models.build import ModelRef

__all__ = ["PROBE_SAMPLES", "Setup", "check_memory", "needs_torch_form", "prepare_model"]


def prepare_model(spec: ExperimentSpec, source: ImageSource) -> Setup:
    """Build (and load) the model for `source`, and the preprocessing its input needs."""
    ref = ModelRef.parse(spec.model.name)
    if ref.kind == "onnx":
        return prepare_onnx(spec, source, ref)
    return prepare_torch(spec, source, ref)
