"""A small Conv-BN-ReLU CNN (~0.52M parameters) of the kind used in CIFAR-10 PTQ studies.

Three stages of two 3x3 conv-BN-ReLU layers (48, 96, 160 channels), each stage closed by a 2x2
max-pool, then global average pooling and a linear classifier.

The pools use `ceil_mode=True` so that a side never falls below 1: 8x8 inputs (sklearn digits)
go 8 -> 4 -> 2 -> 1, 28x28 go 28 -> 14 -> 7 -> 4, and a 1-pixel side stays 1. The alternative,
skipping pools for small images, would make the layer list depend on `image_size`; with ceil
mode the same network (and the same state dict) serves every input size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from quantlens.models.registry import register_model
from quantlens.models.zoo.common import ConvBNAct, check_build_args, init_cnn_weights

MIN_IMAGE_SIZE = 8


class CompactCNN(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, widths: Sequence[int] = (48, 96, 160),
                 convs_per_stage: int = 2, dropout: float = 0.25) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            for _ in range(convs_per_stage):
                layers.append(ConvBNAct(channels, width))
                channels = width
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(channels, num_classes)
        init_cnn_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, C, ceil(H/8), ceil(W/8))
        x = self.flatten(self.pool(x))  # (B, C)
        return self.classifier(self.dropout(x))


@register_model("compact_cnn", input_size=32, min_input_size=MIN_IMAGE_SIZE,
                description="Compact Conv-BN-ReLU CNN, ~0.52M parameters (CIFAR-scale PTQ studies)")
def compact_cnn(*, num_classes: int, in_channels: int, image_size: int,
                widths: Sequence[int] = (48, 96, 160), convs_per_stage: int = 2,
                dropout: float = 0.25) -> nn.Module:
    """Compact Conv-BN-ReLU CNN; options: `widths` (per stage), `convs_per_stage`, `dropout`."""
    check_build_args("compact_cnn", num_classes=num_classes, in_channels=in_channels,
                     image_size=image_size, min_image_size=MIN_IMAGE_SIZE)
    return CompactCNN(num_classes, in_channels, tuple(widths), convs_per_stage, dropout)
