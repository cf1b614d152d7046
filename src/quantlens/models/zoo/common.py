"""Blocks, weight initialisation and argument checks shared by the zoo's families.

Blocks are `nn.Sequential` subclasses so their state-dict keys are the positional ones
(`0` conv, `1` norm, `2` activation) that torchvision's `Conv2dNormActivation` produces.
Every activation is a fresh module instance per call site: per-layer quantization attaches one
observer to each activation module, so a shared instance would mix the statistics of two places.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from quantlens.errors import ModelError

ActivationFactory = Callable[[], nn.Module]


class ConvBN(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d, with 'same' padding for odd kernels (a linear projection)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=(kernel_size - 1) // 2,
                      groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
        )


class ConvBNAct(ConvBN):
    """Conv2d (no bias) -> BatchNorm2d -> a new `activation()` instance."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, activation: ActivationFactory = nn.ReLU) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, groups)
        self.append(activation())


def init_cnn_weights(model: nn.Module, linear_std: float = 0.01) -> None:
    """He-normal (fan-out) convolutions, unit/zero norms, small-normal linears, zero biases."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, linear_std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def check_build_args(model_name: str, *, num_classes: int, in_channels: int, image_size: int,
                     min_image_size: int) -> None:
    """Raise `ModelError` naming the argument when a factory is asked for an impossible model."""
    if num_classes < 1:
        raise ModelError(f"{model_name}: num_classes must be >= 1, got {num_classes}")
    if in_channels < 1:
        raise ModelError(f"{model_name}: in_channels must be >= 1, got {in_channels}")
    if image_size < min_image_size:
        raise ModelError(f"{model_name}: image_size {image_size} is below this model's minimum "
                         f"of {min_image_size} pixels a side")
