"""Turn a model reference (zoo name, `python:`, `timm:`, `torchvision:`) into an nn.Module."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from quantlens.errors import ModelError
from quantlens.models import zoo  # noqa: F401  (registers the zoo)
from quantlens.models.external import build_python_model, build_timm_model, build_torchvision_model
from quantlens.models.registry import MODELS

_EXTERNAL = {"python": build_python_model, "timm": build_timm_model, "torchvision": build_torchvision_model}
DEFAULT_EXTERNAL_INPUT_SIZE = 224


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference: `kind` is 'zoo' or one of the external prefixes."""

    kind: str
    name: str

    @classmethod
    def parse(cls, reference: str) -> ModelRef:
        prefix, sep, rest = reference.partition(":")
        if sep and prefix in _EXTERNAL:
            if not rest:
                raise ModelError(f"model reference {reference!r} names no model after '{prefix}:'")
            return cls(prefix, rest)
        MODELS.get(reference)  # raises with close matches when unknown
        return cls("zoo", reference)

    @property
    def preferred_input_size(self) -> int:
        return MODELS.get(self.name).input_size if self.kind == "zoo" else DEFAULT_EXTERNAL_INPUT_SIZE

    @property
    def min_input_size(self) -> int:
        return MODELS.get(self.name).min_input_size if self.kind == "zoo" else 1


def build_model(reference: str, *, num_classes: int, in_channels: int, image_size: int,
                options: dict | None = None) -> nn.Module:
    ref = ModelRef.parse(reference)
    options = dict(options or {})
    if ref.kind == "zoo":
        try:
            return MODELS.get(ref.name).build(num_classes=num_classes, in_channels=in_channels,
                                              image_size=image_size, **options)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"cannot build {ref.name!r}: {exc}") from None
    return _EXTERNAL[ref.kind](ref.name, num_classes=num_classes, in_channels=in_channels,
                               image_size=image_size, **options)


def input_channels(model: nn.Module) -> int | None:
    """Channels the model's first convolution expects (None when it has no convolution)."""
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return int(module.in_channels)
    return None
