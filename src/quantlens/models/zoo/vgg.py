"""VGG with batch norm (Simonyan & Zisserman 2015; BN variant) with torchvision's feature layout.

`features.N` follows torchvision (conv with bias, BN, ReLU per 3x3 layer; max-pool after each
block). The head depends on the `classifier` option:

- "full": torchvision's head, `avgpool` to 7x7 then Linear(25088, 4096)-ReLU-Dropout-
  Linear(4096, 4096)-ReLU-Dropout-Linear(4096, classes) (`classifier.0/.3/.6`), ~120M parameters.
- "compact": global average pool then Dropout-Linear(512, classes) (`classifier.1`); after five
  pools a 32x32 input is 1x1 already, and a 120M-parameter head on 512 numbers is absurd.
- "auto" (default): "full" when image_size >= 64, else "compact".
"""

from __future__ import annotations

import torch
from torch import nn

from quantlens.errors import ModelError
from quantlens.models.registry import register_model
from quantlens.models.zoo.common import check_build_args, init_cnn_weights

MIN_IMAGE_SIZE = 32  # five 2x2 max-pools
FULL_HEAD_MIN_IMAGE_SIZE = 64
CLASSIFIER_CHOICES = ("auto", "full", "compact")

POOL = "M"
VGG11_LAYOUT = (64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL)
VGG16_LAYOUT = (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL)


def _features(layout: tuple[int | str, ...], in_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = in_channels
    for entry in layout:
        if isinstance(entry, int):
            layers += [nn.Conv2d(channels, entry, 3, padding=1), nn.BatchNorm2d(entry), nn.ReLU()]
            channels = entry
        else:
            layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, layout: tuple[int | str, ...], num_classes: int, in_channels: int, full_head: bool,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.features = _features(layout, in_channels)
        self.flatten = nn.Flatten(1)
        if full_head:
            self.avgpool = nn.AdaptiveAvgPool2d(7)
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(4096, num_classes),
            )
        else:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(512, num_classes))
        init_cnn_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 512, H/32, W/32)
        return self.classifier(self.flatten(self.avgpool(x)))  # pool: (B, 512, 7, 7) or (B, 512, 1, 1)


def _build(name: str, layout: tuple[int | str, ...], num_classes: int, in_channels: int, image_size: int,
           classifier: str, dropout: float) -> nn.Module:
    check_build_args(name, num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                     min_image_size=MIN_IMAGE_SIZE)
    if classifier not in CLASSIFIER_CHOICES:
        raise ModelError(f"{name}: classifier must be one of {', '.join(CLASSIFIER_CHOICES)}; got {classifier!r}")
    full_head = classifier == "full" or (classifier == "auto" and image_size >= FULL_HEAD_MIN_IMAGE_SIZE)
    return VGG(layout, num_classes, in_channels, full_head, dropout)


@register_model("vgg11_bn", input_size=224, min_input_size=MIN_IMAGE_SIZE,
                description="VGG-11 with BN; torchvision head for >= 64 px, compact 512->classes head below")
def vgg11_bn(*, num_classes: int, in_channels: int, image_size: int, classifier: str = "auto",
             dropout: float = 0.5) -> nn.Module:
    """VGG-11-BN; options: `classifier` ("auto", "full", "compact"), `dropout`."""
    return _build("vgg11_bn", VGG11_LAYOUT, num_classes, in_channels, image_size, classifier, dropout)


@register_model("vgg16_bn", input_size=224, min_input_size=MIN_IMAGE_SIZE,
                description="VGG-16 with BN; torchvision head for >= 64 px, compact 512->classes head below")
def vgg16_bn(*, num_classes: int, in_channels: int, image_size: int, classifier: str = "auto",
             dropout: float = 0.5) -> nn.Module:
    """VGG-16-BN; options: `classifier` ("auto", "full", "compact"), `dropout`."""
    return _build("vgg16_bn", VGG16_LAYOUT, num_classes, in_channels, image_size, classifier, dropout)
