"""A PyTorch model's set-up (zoo, `python:`, `timm:`, `torchvision:`): built for the data, its checkpoint
loaded, its input statistics chosen, and what it returns declared or detected on real samples."""

from __future__ import annotations

import torch
from torch import nn

from quantlens import events
from quantlens.data.source import ImageSource, Normalization
from quantlens.data.transforms import Preprocessing, ResizeRule
from quantlens.devices import resolve_device
from quantlens.errors import ConfigError, ModelError, QuantlensError, describe, naming_field
from quantlens.experiments.setup.base import (
    Setup,
    checked,
    declared_normalization,
    image_size,
    needs_torch_form,
    pretrained_weights,
    probe,
)
from quantlens.experiments.spec import ExperimentSpec
from quantlens.models.build import ModelRef, build_model, input_channels
from quantlens.models.checkpoints import load_weights
from quantlens.models.external import check_copyable
from quantlens.models.pretrained import PretrainedWeights
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
    info = OutputInfo(kind, origin, handling)
    if ref.kind != "zoo":  # what quantlens decided about a model it did not build: said, not only recorded
        events.note(f"{spec.model.name}: {info.describe()}")
    return info, model


def _checked_classes(spec: ExperimentSpec, source: ImageSource, pretrained: PretrainedWeights) -> None:
    """Pretrained weights come with their head: another class count needs a new head, which only
    training gives meaning to (a random head's accuracy would be a silently wrong number)."""
    if pretrained.num_classes == source.num_classes:
        return
    if not spec.train.enabled:
        raise ModelError(f"model.pretrained: {spec.model.name} pretrained has {pretrained.num_classes} classes but "
                         f"{source.spec} has {source.num_classes}; evaluating it would need a new, random head: "
                         f"enable training (train.enabled) to fine-tune one, or use data with the model's classes")


def _resize_rule(sidecar: CheckpointSidecar | None, pretrained: PretrainedWeights | None,
                 size: tuple[int, int]) -> ResizeRule:
    """The checkpoint's rule (what its weights were trained with), else the pretrained model's own resize and
    crop at `size` (data.image_size may differ from its own), else the square squash."""
    if sidecar is not None:
        return sidecar.resize_rule
    if pretrained is None:
        return ResizeRule()
    own = pretrained.preprocessing
    return ResizeRule(own.resize, own.scale_at(size), own.interpolation, own.antialias)


def _build(spec: ExperimentSpec, source: ImageSource, pretrained: PretrainedWeights | None, channels: int,
           size: tuple[int, int]) -> nn.Module:
    """The model for `source`'s classes: with its pretrained weights (a new head said out loud), else as
    its reference builds it."""
    if pretrained is None:
        return build_model(spec.model.name, num_classes=source.num_classes, in_channels=channels,
                           image_size=size[0], options=spec.model.options)
    model, replaced = pretrained.build(num_classes=source.num_classes, in_channels=channels,
                                       options=spec.model.options)
    if replaced:
        events.warn(f"{spec.model.name} pretrained has {pretrained.num_classes} classes and {source.spec} "
                    f"{source.num_classes}: its head ({', '.join(replaced)}) is new and random, trained in this run")
    return model


def _statistics(spec: ExperimentSpec, source: ImageSource, sidecar: CheckpointSidecar | None,
                pretrained: PretrainedWeights | None, channels: int) -> tuple[Normalization, str]:
    """(mean/std, where they come from): the config's, else the checkpoint's sidecar's, else the pretrained
    model's own, else the data's defaults."""
    declared = declared_normalization(spec)
    if declared is not None:
        return declared
    if sidecar is not None:
        return Normalization(sidecar.mean, sidecar.std), "the checkpoint's sidecar"
    if pretrained is not None:
        own = pretrained.preprocessing
        return Normalization(own.mean, own.std), own.origin
    # the data's defaults fit any channel count (averaged to one channel for grayscale input)
    return source.normalization.for_channels(channels), f"{source.name}'s default statistics"


def prepare_torch(spec: ExperimentSpec, source: ImageSource, ref: ModelRef) -> Setup:
    """Build (and load) the model for `source`, and the preprocessing its input needs."""
    if spec.model.input_layout != "auto":
        raise ConfigError(f"model.input_layout: applies to ONNX files; {spec.model.name} is a PyTorch model, which "
                          f"takes NCHW")
    pretrained = pretrained_weights(spec) if spec.model.pretrained else None
    if pretrained is not None:
        _checked_classes(spec, source, pretrained)
    sidecar = CheckpointSidecar.find(spec.model.weights)
    if sidecar is not None and sidecar.num_classes != source.num_classes:
        raise ModelError(f"checkpoint {spec.model.weights} was trained for {sidecar.num_classes} classes "
                         f"but {source.spec} has {source.num_classes}")
    if sidecar is not None and tuple(sidecar.class_names) != tuple(source.class_names):
        # the same count under other names (or another order): output i is the sidecar's class i
        events.warn(f"checkpoint {spec.model.weights} was trained on classes {list(sidecar.class_names)}, and "
                    f"{source.spec} names its classes {list(source.class_names)}: they are matched by index")
    size = image_size(spec, source, ref, sidecar, pretrained.preprocessing.size if pretrained else None)
    # pretrained weights were trained on RGB: grayscale data is replicated unless data.channels says otherwise
    # (timm then adapts the first convolution's weights)
    channels = spec.data.channels or (sidecar.in_channels if sidecar else 3 if pretrained else source.channels)
    model = _build(spec, source, pretrained, channels, size)
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
    stats, origin = _statistics(spec, source, sidecar, pretrained, channels)
    resize = _resize_rule(sidecar, pretrained, size)
    preprocessing = Preprocessing(channels, size, checked(stats, channels, origin), resize)
    if ref.kind != "zoo" and needs_torch_form(spec):
        check_copyable(model, spec.model.name)
    output, model = _output_of_torch_model(spec, ref, model, source, preprocessing)
    model.to(resolve_device(spec.device))
    return Setup(model, preprocessing, sidecar, output, None, origin)
