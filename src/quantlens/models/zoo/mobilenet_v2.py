"""MobileNetV2 (Sandler et al. 2018) with torchvision's state-dict layout.

Keys: `features.0` (stem conv-BN-ReLU6), `features.1`..`features.17` (inverted residuals, each a
`conv` Sequential: [1x1 expand conv-BN-ReLU6,] 3x3 depthwise conv-BN-ReLU6, 1x1 linear projection
conv, BN), `features.18` (1x1 conv-BN-ReLU6 to 1280 channels), `classifier.1` (after dropout).
Pooling, flatten and the residual `Add` are parameter-free modules added for quantization passes.
"""

from __future__ import annotations

import torch
from torch import nn

from quantlens.models.registry import register_model
from quantlens.models.zoo.common import ConvBNAct, check_build_args, init_cnn_weights
from quantlens.nn.ops import Add

MIN_IMAGE_SIZE = 32

# (expansion t, output channels c, repeats n, first stride s), table 2 of the paper
INVERTED_RESIDUAL_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of `divisor`, never more than 10% below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class InvertedResidual(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = round(in_channels * expansion)
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvBNAct(in_channels, hidden, kernel_size=1, activation=nn.ReLU6))
        layers += [
            ConvBNAct(hidden, hidden, stride=stride, groups=hidden, activation=nn.ReLU6),  # depthwise
            nn.Conv2d(hidden, out_channels, 1, bias=False),  # linear bottleneck: no activation
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels
        if self.use_residual:
            self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return self.add(x, out) if self.use_residual else out


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width_mult: float = 1.0, dropout: float = 0.2) -> None:
        super().__init__()
        channels = make_divisible(32 * width_mult)
        last_channels = make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [ConvBNAct(in_channels, channels, stride=2, activation=nn.ReLU6)]
        for expansion, out, repeats, first_stride in INVERTED_RESIDUAL_SETTINGS:
            out_channels = make_divisible(out * width_mult)
            for index in range(repeats):
                layers.append(InvertedResidual(channels, out_channels, first_stride if index == 0 else 1, expansion))
                channels = out_channels
        layers.append(ConvBNAct(channels, last_channels, kernel_size=1, activation=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last_channels, num_classes))
        init_cnn_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 1280, H/32, W/32)
        return self.classifier(self.flatten(self.pool(x)))


@register_model("mobilenet_v2", input_size=224, min_input_size=MIN_IMAGE_SIZE,
                description="MobileNetV2 (torchvision-compatible keys), 2.2M parameters at width 1.0")
def mobilenet_v2(*, num_classes: int, in_channels: int, image_size: int, width_mult: float = 1.0,
                 dropout: float = 0.2) -> nn.Module:
    """MobileNetV2; options: `width_mult` (channel multiplier), `dropout` (before the classifier)."""
    check_build_args("mobilenet_v2", num_classes=num_classes, in_channels=in_channels,
                     image_size=image_size, min_image_size=MIN_IMAGE_SIZE)
    return MobileNetV2(num_classes, in_channels, width_mult, dropout)
