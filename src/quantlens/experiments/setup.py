"""Decide how a model meets its data: classes, channels, input size and normalisation.

Precedence for each setting: the config, then the checkpoint's sidecar (when quantlens trained
it), then what the data and the model say.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil
from torch import nn

from quantlens.data.source import ImageSource, Normalization
from quantlens.data.transforms import Preprocessing
from quantlens.devices import resolve_device
from quantlens.errors import ConfigError, ModelError, QuantlensError, naming_field
from quantlens.experiments.spec import ExperimentSpec
from quantlens.models.build import ModelRef, build_model, input_channels
from quantlens.models.checkpoints import load_weights
from quantlens.models.sidecar import CheckpointSidecar


@dataclass
class Setup:
    model: nn.Module
    preprocessing: Preprocessing
    sidecar: CheckpointSidecar | None

    def random_weights(self, spec: ExperimentSpec) -> bool:
        """A zoo model with no checkpoint and no training: its weights are the initialiser's."""
        return not spec.model.weights and not spec.train.enabled and ModelRef.parse(spec.model.name).kind == "zoo"

    def describe(self) -> dict:
        p = self.preprocessing
        return {"channels": p.channels, "image_size": list(p.size), "mean": list(p.normalization.mean),
                "std": list(p.normalization.std),
                "parameters": sum(t.numel() for t in self.model.parameters())}


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


def prepare_model(spec: ExperimentSpec, source: ImageSource) -> Setup:
    """Build (and load) the model for `source`, and the preprocessing its input needs."""
    sidecar = CheckpointSidecar.find(spec.model.weights)
    if sidecar is not None and sidecar.num_classes != source.num_classes:
        raise ModelError(f"checkpoint {spec.model.weights} was trained for {sidecar.num_classes} classes "
                         f"but {source.spec} has {source.num_classes}")
    ref = ModelRef.parse(spec.model.name)
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
    if spec.data.mean is not None:
        if len(spec.data.mean) not in (1, channels):
            raise ModelError(f"data.mean has {len(spec.data.mean)} values but the model takes {channels} channels")
        stats = Normalization(spec.data.mean, spec.data.std)
    elif sidecar is not None:
        stats = Normalization(sidecar.mean, sidecar.std)
    else:
        stats = source.normalization  # adapted to the model's channel count below
    model.to(resolve_device(spec.device))
    return Setup(model, Preprocessing(channels, size, stats.for_channels(channels)), sidecar)


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
