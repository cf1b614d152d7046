"""Turn a model reference (zoo name, `python:`, `onnx:`, `timm:`, `torchvision:`) into an nn.Module."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from quantlens.errors import ModelError, UnknownNameError
from quantlens.models import zoo  # noqa: F401  (registers the zoo)
from quantlens.models.external import build_python_model, build_timm_model, build_torchvision_model
from quantlens.models.registry import MODELS

_EXTERNAL = {"python": build_python_model, "timm": build_timm_model, "torchvision": build_torchvision_model}
DEFAULT_EXTERNAL_INPUT_SIZE = 224
REFERENCE_FORMS = ("a zoo name (`quantlens models`), python:<module or file.py>:<callable>, onnx:<file> (or a path "
                   "ending in .onnx), timm:<name> or torchvision:<name>")


def _unknown(reference: str) -> UnknownNameError:
    message = MODELS.unknown_message(reference)
    if Path(reference).expanduser().is_file():
        message += f"; {reference} is a file: write onnx:{reference} if it is an ONNX model"
    return UnknownNameError(f"{message}; a model is {REFERENCE_FORMS}")


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference: `kind` is 'zoo', 'onnx' or one of the external prefixes; for 'onnx',
    `name` is the file's path (which exists and holds a readable ONNX classifier)."""

    kind: str
    name: str

    @classmethod
    def parse(cls, reference: str) -> ModelRef:
        prefix, sep, rest = reference.partition(":")
        if sep and prefix in (*_EXTERNAL, "onnx"):
            if not rest:
                raise ModelError(f"model reference {reference!r} names no model after '{prefix}:'")
            ref = cls(prefix, rest)
        elif reference.lower().endswith(".onnx"):
            ref = cls("onnx", reference)
        elif reference in MODELS:
            return cls("zoo", reference)
        else:
            raise _unknown(reference)
        if ref.kind == "onnx":
            ref.onnx_file()  # missing, corrupt or not a classifier: one line now
        return ref

    def onnx_file(self):
        """The checked ONNX file (models.onnx.OnnxFile) of an 'onnx' reference."""
        from quantlens.models.onnx import load_onnx_file

        return load_onnx_file(self.name)

    def _onnx_side(self) -> int | None:
        file = self.onnx_file()
        _, height, width = file.input.dims(file.input.layout or "nchw")
        return height if height is not None and height == width else None

    @property
    def preferred_input_size(self) -> int:
        if self.kind == "zoo":
            return MODELS.get(self.name).input_size
        if self.kind == "onnx":
            return self._onnx_side() or DEFAULT_EXTERNAL_INPUT_SIZE
        return DEFAULT_EXTERNAL_INPUT_SIZE

    @property
    def min_input_size(self) -> int:
        return MODELS.get(self.name).min_input_size if self.kind == "zoo" else 1


def build_model(reference: str, *, num_classes: int, in_channels: int, image_size: int,
                options: dict | None = None) -> nn.Module:
    """The model `reference` names. An ONNX file is returned as it is, run on ONNX Runtime (NCHW unless
    its input shape or first node says NHWC; `num_classes`, `in_channels` and `image_size` are the
    file's own); experiments set it up with its layout, normalisation and outputs resolved."""
    ref = ModelRef.parse(reference)
    options = dict(options or {})
    if ref.kind == "zoo":
        try:
            return MODELS.get(ref.name).build(num_classes=num_classes, in_channels=in_channels,
                                              image_size=image_size, **options)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"cannot build {ref.name!r}: {exc}") from None
    if ref.kind == "onnx":
        if options:
            raise ModelError(f"model options {sorted(options)} do not apply to an ONNX file ({ref.name})")
        from quantlens.models.onnx import OnnxRuntimeModule

        file = ref.onnx_file()
        return OnnxRuntimeModule(file, file.input.layout or "nchw")
    return _EXTERNAL[ref.kind](ref.name, num_classes=num_classes, in_channels=in_channels,
                               image_size=image_size, **options)


def input_channels(model: nn.Module) -> int | None:
    """Channels the model's first convolution expects (None when it has no convolution)."""
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return int(module.in_channels)
    return None
