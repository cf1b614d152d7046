"""What synthetic benchmark data must look like for a checkpoint: classes, channels and input size.

`quantlens bench --weights w` has no dataset to say how many classes the model has. The checkpoint's
sidecar says it when quantlens trained it (as for `eval`), an ONNX file or pretrained weights say it
themselves; otherwise the class count is read from
the checkpoint itself: the output rows of the model's last linear layer (or last convolution, for
classifiers that end in one), under that layer's name in the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from quantlens.errors import ConfigError
from quantlens.models.build import ModelRef, build_model
from quantlens.models.checkpoints import read_state_dict
from quantlens.models.pretrained import resolve_pretrained
from quantlens.models.sidecar import CheckpointSidecar

DEFAULT_CLASSES = 1000  # ImageNet's, for a model without weights: speed does not depend on it
DEFAULT_CHANNELS = 3


@dataclass(frozen=True)
class BenchInput:
    classes: int
    channels: int
    size: int
    origin: str  # where the values came from, for the user

    def data_spec(self) -> str:
        return f"synthetic:classes={self.classes},channels={self.channels},size={self.size}"


def _classifier_key(model: nn.Module) -> str | None:
    """The state_dict key of the last linear layer's weight (else the last convolution's)."""
    linear = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)]
    last = (linear or convs or [None])[-1]
    return None if last is None else f"{last}.weight"


def infer_num_classes(model_name: str, weights: str, channels: int, size: int) -> int | None:
    """The class count a checkpoint was saved with (None when its classifier cannot be found)."""
    # layer names do not depend on the class count: any count finds the classifier's key
    template = build_model(model_name, num_classes=2, in_channels=channels, image_size=size)
    key = _classifier_key(template)
    state = read_state_dict(weights)
    tensor = state.get(key) if key else None
    return int(tensor.shape[0]) if tensor is not None and tensor.ndim >= 2 else None


def bench_input(model_name: str, weights: str | None, *, classes: int | None, channels: int | None,
                size: int | None, pretrained: bool = False) -> BenchInput:
    """Given values win; then the ONNX file, the sidecar or the pretrained weights; then, for classes, the
    checkpoint; then the defaults."""
    ref = ModelRef.parse(model_name)
    if pretrained and ref.kind in ("timm", "torchvision"):  # the weights' head and their own input size
        weights_found = resolve_pretrained(ref.kind, ref.name)
        return BenchInput(classes or weights_found.num_classes, channels or DEFAULT_CHANNELS,
                          size or weights_found.preprocessing.size[0], f"{weights_found.label} pretrained weights")
    if ref.kind == "onnx":  # the file says its classes and input shape where it fixes them
        file = ref.onnx_file()
        file_channels, height, _ = file.input.dims(file.input.layout or "nchw")
        return BenchInput(classes or file.num_classes or DEFAULT_CLASSES,
                          channels or file_channels or DEFAULT_CHANNELS,
                          size or height or ref.preferred_input_size, f"the ONNX file {ref.name}")
    sidecar = CheckpointSidecar.find(weights)
    if sidecar is not None:
        origin = f"the checkpoint's sidecar {CheckpointSidecar.path_for(weights)}"
        return BenchInput(classes or sidecar.num_classes, channels or sidecar.in_channels,
                          size or sidecar.image_size[0], origin)
    channels = channels or DEFAULT_CHANNELS
    size = size or ref.preferred_input_size
    if classes is not None or weights is None:
        return BenchInput(classes or DEFAULT_CLASSES, channels, size, "the options and the model's defaults")
    inferred = infer_num_classes(model_name, weights, channels, size)
    if inferred is None:
        raise ConfigError(f"--num-classes: cannot tell how many classes {weights} was saved with (no sidecar, "
                          f"and no final linear layer found); give --num-classes")
    return BenchInput(inferred, channels, size, f"the classifier of {weights}")
