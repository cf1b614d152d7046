"""What every model's set-up shares: the `Setup` it produces and the rules for its input (size,
statistics), the real samples its outputs are examined on, and whether the run needs a torch module."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from quantlens.data.source import ImageSource, Normalization
from quantlens.data.transforms import Preprocessing, normalize, to_model_layout
from quantlens.errors import ConfigError, ModelError, QuantlensError, naming_field
from quantlens.experiments.spec import ExperimentSpec
from quantlens.models.build import ModelRef
from quantlens.models.pretrained import PretrainedWeights, resolve_pretrained
from quantlens.models.sidecar import CheckpointSidecar
from quantlens.train.outputs import OutputInfo

# Real samples the outputs are examined on (and an ONNX file's PyTorch form is verified on).
PROBE_SAMPLES = 16


@dataclass
class Setup:
    model: nn.Module
    preprocessing: Preprocessing
    sidecar: CheckpointSidecar | None
    output: OutputInfo | None = None  # what the model returns and how quantlens handles it
    onnx: object | None = None  # models.onnx.OnnxModel, for an ONNX file
    normalization_origin: str = ""

    @property
    def evaluation_model(self) -> nn.Module:
        """What FP32 evaluation runs on: an ONNX file as it is, on ONNX Runtime; else `model`."""
        return self.onnx.runtime if self.onnx is not None else self.model

    @staticmethod
    def weights_origin(spec: ExperimentSpec) -> str:
        """Where the model's weights come from, for the run record and --check."""
        kind = ModelRef.parse(spec.model.name).kind
        if kind == "onnx":
            return "in the ONNX file"
        if spec.model.weights:
            return spec.model.weights
        if spec.model.pretrained:
            origin = pretrained_weights(spec).origin
            return f"{origin}, fine-tuned in this run" if spec.train.enabled else origin
        if spec.train.enabled:
            return "trained in this run"
        return "random (untrained)" if kind == "zoo" else f"as {spec.model.name} builds them (no checkpoint given)"

    def random_weights(self, spec: ExperimentSpec) -> bool:
        """A zoo model with no checkpoint and no training: its weights are the initialiser's."""
        return not spec.model.weights and not spec.train.enabled and ModelRef.parse(spec.model.name).kind == "zoo"

    def describe(self) -> dict:
        p = self.preprocessing
        parameters = (self.onnx.file.parameter_count if self.onnx is not None
                      else sum(t.numel() for t in self.model.parameters()))
        described = {"channels": p.channels, "image_size": list(p.size), "resize": p.resize.describe(p.size),
                     "mean": list(p.normalization.mean), "std": list(p.normalization.std), "parameters": parameters}
        if self.normalization_origin:
            described["normalization_origin"] = self.normalization_origin
        if self.output is not None:
            described["output"] = self.output.to_dict()
        if self.onnx is not None:
            described["onnx"] = self.onnx.describe()
        return described


def pretrained_weights(spec: ExperimentSpec) -> PretrainedWeights:
    """The cached pretrained weights `model.pretrained` asks for; errors name the field."""
    ref = ModelRef.parse(spec.model.name)
    try:
        return resolve_pretrained(ref.kind, ref.name)
    except QuantlensError as exc:
        raise naming_field("model.pretrained", exc) from None


def image_size(spec: ExperimentSpec, source: ImageSource, ref: ModelRef, sidecar: CheckpointSidecar | None,
               model_size: tuple[int, int] | None = None) -> tuple[int, int]:
    """data.image_size, else the checkpoint's sidecar's, else `model_size` (a pretrained model's own), else
    the data's square size (at least the model's minimum), else the model's preferred size."""
    if spec.data.image_size:
        return spec.data.image_size, spec.data.image_size
    if sidecar is not None:
        return tuple(sidecar.image_size)
    if model_size is not None:
        return tuple(model_size)
    native = source.uniform_size
    if native is not None and native[0] == native[1]:
        side = max(native[0], ref.min_input_size)
        return side, side
    return ref.preferred_input_size, ref.preferred_input_size


def scaled(mean, std, pixel_scale: float | None) -> Normalization:
    """Statistics in units of `pixel_scale` (a white pixel's value) -> statistics on [0, 1] pixels;
    a scale alone means mean 0, std 1 (raw pixels at that scale)."""
    scale = pixel_scale or 1.0
    if mean is None:
        mean, std = (0.0,), (1.0,)
    return Normalization(tuple(v / scale for v in mean), tuple(v / scale for v in std))


def declared_normalization(spec: ExperimentSpec) -> tuple[Normalization, str] | None:
    m = spec.model
    if spec.data.mean is not None:
        if m.mean is not None or m.pixel_scale is not None:
            raise ConfigError("model.mean/std/pixel_scale and data.mean/std both describe the input statistics; "
                              "give one of them")
        return Normalization(spec.data.mean, spec.data.std), "data.mean/std"
    if m.mean is None and m.pixel_scale is None:
        return None
    return scaled(m.mean, m.std, m.pixel_scale), "model.mean/std/pixel_scale"


def checked(stats: Normalization, channels: int, origin: str) -> Normalization:
    if len(stats.mean) not in (1, channels):
        raise ModelError(f"{origin} has {len(stats.mean)} values but the model takes {channels} channels")
    return stats.for_channels(channels)


def probe(source: ImageSource, preprocessing: Preprocessing, avoid_batch: int | None = None) -> torch.Tensor:
    """float32 (n, C, H, W): up to PROBE_SAMPLES samples spread over the data, preprocessed for the model
    (n differs from `avoid_batch`, so that a graph which fixes its batch size is found out)."""
    n = min(len(source), PROBE_SAMPLES)
    if avoid_batch == n and n > 1:
        n -= 1
    idx = np.unique(np.linspace(0, len(source) - 1, n).round().astype(np.int64))
    images = source.images[idx] if isinstance(source.images, np.ndarray) else [source.images[i] for i in idx]
    return normalize(to_model_layout(images, preprocessing), preprocessing.normalization)


def needs_torch_form(spec: ExperimentSpec) -> bool:
    """Runs that quantize, train, benchmark or compare the model copy, wrap or export a torch module;
    evaluation alone does not."""
    return bool(spec.quantization or spec.peers or spec.benchmark.enabled or spec.train.enabled)


