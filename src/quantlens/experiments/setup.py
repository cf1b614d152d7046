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

from dataclasses import dataclass

import numpy as np
import psutil
import torch
from torch import nn

from quantlens import events
from quantlens.data.source import ImageSource, Normalization
from quantlens.data.transforms import Preprocessing, normalize, to_model_layout
from quantlens.devices import resolve_device
from quantlens.errors import ConfigError, ModelError, QuantlensError, describe, naming_field
from quantlens.experiments.spec import ExperimentSpec
from quantlens.models.build import ModelRef, build_model, input_channels
from quantlens.models.checkpoints import load_weights
from quantlens.models.external import check_copyable
from quantlens.models.sidecar import CheckpointSidecar
from quantlens.train.outputs import OutputInfo, adapt_outputs, resolve_output_kind

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
        described = {"channels": p.channels, "image_size": list(p.size), "mean": list(p.normalization.mean),
                     "std": list(p.normalization.std), "parameters": parameters}
        if self.normalization_origin:
            described["normalization_origin"] = self.normalization_origin
        if self.output is not None:
            described["output"] = self.output.to_dict()
        if self.onnx is not None:
            described["onnx"] = self.onnx.describe()
        return described


def _image_size(spec: ExperimentSpec, source: ImageSource, ref: ModelRef,
                sidecar: CheckpointSidecar | None) -> tuple[int, int]:
    if spec.data.image_size:
        return spec.data.image_size, spec.data.image_size
    if sidecar is not None:
        return tuple(sidecar.image_size)
    native = source.uniform_size
    if native is not None and native[0] == native[1]:
        side = max(native[0], ref.min_input_size)
        return side, side
    return ref.preferred_input_size, ref.preferred_input_size


def _scaled(mean, std, pixel_scale: float | None) -> Normalization:
    """Statistics in units of `pixel_scale` (a white pixel's value) -> statistics on [0, 1] pixels;
    a scale alone means mean 0, std 1 (raw pixels at that scale)."""
    scale = pixel_scale or 1.0
    if mean is None:
        mean, std = (0.0,), (1.0,)
    return Normalization(tuple(v / scale for v in mean), tuple(v / scale for v in std))


def _declared_normalization(spec: ExperimentSpec) -> tuple[Normalization, str] | None:
    m = spec.model
    if spec.data.mean is not None:
        if m.mean is not None or m.pixel_scale is not None:
            raise ConfigError("model.mean/std/pixel_scale and data.mean/std both describe the input statistics; "
                              "give one of them")
        return Normalization(spec.data.mean, spec.data.std), "data.mean/std"
    if m.mean is None and m.pixel_scale is None:
        return None
    return _scaled(m.mean, m.std, m.pixel_scale), "model.mean/std/pixel_scale"


def _checked(stats: Normalization, channels: int, origin: str) -> Normalization:
    if len(stats.mean) not in (1, channels):
        raise ModelError(f"{origin} has {len(stats.mean)} values but the model takes {channels} channels")
    return stats.for_channels(channels)


def _probe(source: ImageSource, preprocessing: Preprocessing, avoid_batch: int | None = None) -> torch.Tensor:
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


def _output_of_torch_model(spec: ExperimentSpec, ref: ModelRef, model: nn.Module, source: ImageSource,
                           preprocessing: Preprocessing) -> tuple[OutputInfo, nn.Module]:
    """What the model returns (declared, else detected on real samples; zoo models return logits), and
    the model adapted so that a softmax of its outputs is its probabilities."""
    declared = None if spec.model.output == "auto" else spec.model.output
    if ref.kind == "zoo":
        kind, origin = declared or "logits", "declared (model.output)" if declared else "zoo models return logits"
    else:
        probe = _probe(source, preprocessing)
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                outputs = torch.as_tensor(model(probe))
        except Exception as exc:  # the user's model fails on real data: say so in one line
            raise ModelError(f"model {spec.model.name} fails on {len(probe)} samples of {source.spec} at "
                             f"{tuple(probe.shape[1:])} ({describe(exc)})") from None
        finally:
            model.train(was_training)
        kind, origin, disagreement = resolve_output_kind(declared, "declared (model.output)", outputs)
        if disagreement:
            events.warn(f"model {spec.model.name}: {disagreement}")
    model, handling = adapt_outputs(model, kind)
    return OutputInfo(kind, origin, handling), model


def _prepare_onnx(spec: ExperimentSpec, source: ImageSource, ref: ModelRef) -> Setup:
    from quantlens.models.onnx import open_onnx_model, resolve_layout

    m = spec.model
    if m.weights:
        raise ModelError("model.weights: an ONNX file carries its own weights; leave model.weights (--weights) out")
    if spec.train.enabled:
        raise ModelError(f"train: {ref.name} is an ONNX file; it is evaluated, simulated and benchmarked as it is, "
                         f"not trained")
    if m.options:
        raise ModelError(f"model.options do not apply to an ONNX file ({ref.name})")
    file = ref.onnx_file()
    layout, layout_origin = resolve_layout(file, None if m.input_layout == "auto" else m.input_layout)
    channels, height, width = file.input.dims(layout)
    if channels is None:
        channels = spec.data.channels or source.channels
    elif spec.data.channels and spec.data.channels != channels:
        raise ModelError(f"{ref.name} takes {channels}-channel input ({layout.upper()}) but data.channels is "
                         f"{spec.data.channels}")
    if channels not in (1, 3):
        raise ModelError(f"{ref.name} takes {channels}-channel input ({layout.upper()} {list(file.input.shape)}); "
                         f"quantlens feeds 1- or 3-channel images (is the layout right? --input-layout)")
    if height is not None and width is not None:
        if spec.data.image_size and (height, width) != (spec.data.image_size, spec.data.image_size):
            raise ModelError(f"{ref.name} takes {height}x{width} images but data.image_size is {spec.data.image_size}")
        size = (height, width)
    else:
        size = _image_size(spec, source, ref, None)
    if file.num_classes is not None and file.num_classes != source.num_classes:
        raise ModelError(f"{ref.name} returns {file.num_classes} classes but {source.spec} has {source.num_classes}")
    declared = _declared_normalization(spec)
    hints = file.hints
    if declared is not None:
        stats, origin = declared
    elif hints.mean is not None or hints.pixel_scale is not None:
        keys = sorted({hints.origin[k] for k in ("mean", "std", "pixel_scale") if k in hints.origin})
        stats = _scaled(hints.mean, hints.std, hints.pixel_scale)
        origin = f"the file's metadata ({', '.join(keys)})"
    else:
        stats, origin = source.normalization.for_channels(channels), f"{source.name}'s default statistics"
        events.warn(f"{ref.name} says nothing about the input statistics it expects; {origin} are used (mean "
                    f"{list(stats.mean)}, std {list(stats.std)} on [0, 1] pixels): give --mean/--std/--pixel-scale "
                    f"if the model expects other ones")
    preprocessing = Preprocessing(channels, size, _checked(stats, channels, origin))
    opened = open_onnx_model(file, layout=layout, layout_origin=layout_origin,
                             declared_output=None if m.output == "auto" else m.output,
                             probe=_probe(source, preprocessing, avoid_batch=file.input.batch),
                             num_classes=source.num_classes, convert=needs_torch_form(spec))
    model = opened.model.to(resolve_device(spec.device))
    return Setup(model, preprocessing, None, opened.output, opened, origin)


def prepare_model(spec: ExperimentSpec, source: ImageSource) -> Setup:
    """Build (and load) the model for `source`, and the preprocessing its input needs."""
    ref = ModelRef.parse(spec.model.name)
    if ref.kind == "onnx":
        return _prepare_onnx(spec, source, ref)
    if spec.model.input_layout != "auto":
        raise ConfigError(f"model.input_layout: applies to ONNX files; {spec.model.name} is a PyTorch model, which "
                          f"takes NCHW")
    sidecar = CheckpointSidecar.find(spec.model.weights)
    if sidecar is not None and sidecar.num_classes != source.num_classes:
        raise ModelError(f"checkpoint {spec.model.weights} was trained for {sidecar.num_classes} classes "
                         f"but {source.spec} has {source.num_classes}")
    size = _image_size(spec, source, ref, sidecar)
    channels = spec.data.channels or (sidecar.in_channels if sidecar else source.channels)
    model = build_model(spec.model.name, num_classes=source.num_classes, in_channels=channels,
                        image_size=size[0], options=spec.model.options)
    needed = input_channels(model)
    if needed is not None and needed != channels:
        if spec.data.channels:
            raise ModelError(f"model {spec.model.name} takes {needed}-channel input but data.channels is {channels}")
        channels = needed  # e.g. a torchvision model fixed at RGB: grayscale data is replicated
    if spec.model.weights:
        try:
            load_weights(model, spec.model.weights)
        except QuantlensError as exc:
            raise naming_field("model.weights", exc) from None
    declared = _declared_normalization(spec)
    if declared is not None:
        stats, origin = declared
    elif sidecar is not None:
        stats, origin = Normalization(sidecar.mean, sidecar.std), "the checkpoint's sidecar"
    else:  # the data's defaults fit any channel count (averaged to one channel for grayscale input)
        stats, origin = source.normalization.for_channels(channels), f"{source.name}'s default statistics"
    preprocessing = Preprocessing(channels, size, _checked(stats, channels, origin))
    if ref.kind != "zoo" and needs_torch_form(spec):
        check_copyable(model, spec.model.name)
    output, model = _output_of_torch_model(spec, ref, model, source, preprocessing)
    model.to(resolve_device(spec.device))
    return Setup(model, preprocessing, sidecar, output, None, origin)


# Share of the memory available now that the prepared images may take; the rest is for the model,
# activations and the decoded source itself.
MEMORY_SHARE = 0.5


def check_memory(spec: ExperimentSpec, source: ImageSource, preprocessing: Preprocessing) -> None:
    """ConfigError naming data.image_size when the images at model layout ((N, C, H, W) uint8) would
    not fit in memory, instead of an allocation failure or a swapping machine minutes later."""
    c, (h, w) = preprocessing.channels, preprocessing.size
    needed = len(source) * c * h * w
    available = psutil.virtual_memory().available
    if needed > MEMORY_SHARE * available:
        gib = 2**30
        raise ConfigError(f"data.image_size: {len(source)} images at {c}x{h}x{w} would take {needed / gib:.1f} GiB, "
                          f"more than half of the {available / gib:.1f} GiB of memory available; choose a smaller "
                          f"image_size")
