"""A PyTorch model's set-up (zoo, `python:`, `timm:`, `torchvision:`): built for the data, its checkpoint
loaded, its input statistics chosen, and what it returns declared or detected on real samples."""

from __future__ import annotations

import torch
from torch import nn

from quantlens import events
from quantlens.data.source import ImageSource, Normalization
from quantlens.data.transforms import Preprocessing
from quantlens.devices import resolve_device
from quantlens.errors import ConfigError, ModelError, QuantlensError, describe, naming_field
from quantlens.experiments.setup.base import Setup, checked, declared_normalization, image_size, needs_torch_form, probe
from quantlens.experiments.spec import ExperimentSpec
from quantlens.models.build import ModelRef, build_model, input_channels
from quantlens.models.checkpoints import load_weights
from quantlens.models.external import check_copyable
from quantlens.models.sidecar import CheckpointSidecar
from quantlens.train.outputs import OutputInfo, adapt_outputs, resolve_output_kind


def _output_of_torch_model(spec: ExperimentSpec, ref: ModelRef, model: nn.Module, source: ImageSource,
                           preprocessing: Preprocessing) -> tuple[OutputInfo, nn.Module]:
    """What the model returns (declared, else detected on real samples; zoo models return logits), and
    the model adapted so that a softmax of its outputs is its probabilities."""
    declared = None if spec.model.output == "auto" else spec.model.output
    if ref.kind == "zoo":
        kind, origin = declared or "logits", "declared (model.output)" if declared else "zoo models return logits"
    else:
        samples = probe(source, preprocessing)
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                outputs = torch.as_tensor(model(samples))
        except Exception as exc:  # the user's model fails on real data: say so in one line
            raise ModelError(f"model {spec.model.name} fails on {len(samples)} samples of {source.spec} at "
                             f"{tuple(samples.shape[1:])} ({describe(exc)})") from None
        finally:
            model.train(was_training)
        kind, origin, disagreement = resolve_output_kind(declared, "declared (model.output)", outputs)
        if disagreement:
            events.warn(f"model {spec.model.name}: {disagreement}")
    model, handling = adapt_outputs(model, kind)
    return OutputInfo(kind, origin, handling), model


def prepare_torch(spec: ExperimentSpec, source: ImageSource, ref: ModelRef) -> Setup:
    """Build (and load) the model for `source`, and the preprocessing its input needs."""
    if spec.model.input_layout != "auto":
        raise ConfigError(f"model.input_layout: applies to ONNX files; {spec.model.name} is a PyTorch model, which "
                          f"takes NCHW")
    sidecar = CheckpointSidecar.find(spec.model.weights)
    if sidecar is not None and sidecar.num_classes != source.num_classes:
        raise ModelError(f"checkpoint {spec.model.weights} was trained for {sidecar.num_classes} classes "
                         f"but {source.spec} has {source.num_classes}")
    size = image_size(spec, source, ref, sidecar)
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
    declared = declared_normalization(spec)
    if declared is not None:
        stats, origin = declared
    elif sidecar is not None:
        stats, origin = Normalization(sidecar.mean, sidecar.std), "the checkpoint's sidecar"
    else:  # the data's defaults fit any channel count (averaged to one channel for grayscale input)
        stats, origin = source.normalization.for_channels(channels), f"{source.name}'s default statistics"
    preprocessing = Preprocessing(channels, size, checked(stats, channels, origin))
    if ref.kind != "zoo" and needs_torch_form(spec):
        check_copyable(model, spec.model.name)
    output, model = _output_of_torch_model(spec, ref, model, source, preprocessing)
    model.to(resolve_device(spec.device))
    return Setup(model, preprocessing, sidecar, output, None, origin)


