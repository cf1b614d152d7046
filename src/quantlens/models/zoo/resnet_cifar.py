"""CIFAR ResNets of He et al. (2016), section 4.2: 6n+2 layers, three stages of 16/32/64 channels.

State-dict keys match the widely used pretrained CIFAR-10 checkpoints (Idelbayev's
`resnet20-12fca82f.th` once its DataParallel `module.` prefix is stripped): `conv1`, `bn1`,
`layerS.B.conv1/bn1/conv2/bn2`, `linear`. The modules this file adds on top of those (the
option-A shortcut, activations, `Add`, pooling) hold no parameters and no buffers, so strict
loading of such a checkpoint finds exactly the same keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from quantlens.models.registry import register_model
from quantlens.models.zoo.common import check_build_args, init_cnn_weights
from quantlens.nn.ops import Add

MIN_IMAGE_SIZE = 8


class SubsampleZeroPadShortcut(nn.Module):
    """Option-A shortcut: keep every `stride`-th pixel, zero-pad new channels equally on both sides.

    For 16 -> 32 channels at stride 2 this is `pad(x[:, :, ::2, ::2])` with 8 zero channels before
    and 8 after. `x[::2]` keeps ceil(H/2) rows, as many as the block's stride-2, padding-1 conv.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option-A shortcut cannot reduce channels ({in_channels} -> {out_channels})")
        extra = out_channels - in_channels
        self.stride = stride
        self.pad_before = extra // 2
        self.pad_after = extra - extra // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (B, C_in, ceil(H/s), ceil(W/s))
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))  # (B, C_out, ...)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad_channels=({self.pad_before}, {self.pad_after})"


class CifarBasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = SubsampleZeroPadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Identity()
        self.add = Add()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(self.add(out, self.shortcut(x)))


class CifarResNet(nn.Module):
    def __init__(self, blocks_per_stage: int, num_classes: int, in_channels: int,
                 widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.layer1 = self._stage(widths[0], widths[0], blocks_per_stage, stride=1)
        self.layer2 = self._stage(widths[0], widths[1], blocks_per_stage, stride=2)
        self.layer3 = self._stage(widths[1], widths[2], blocks_per_stage, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.linear = nn.Linear(widths[2], num_classes)
        init_cnn_weights(self)

    @staticmethod
    def _stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [CifarBasicBlock(in_channels, out_channels, stride)]
        layers += [CifarBasicBlock(out_channels, out_channels, 1) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 16, H, W)
        x = self.layer3(self.layer2(self.layer1(x)))  # (B, 64, ceil(H/4), ceil(W/4))
        return self.linear(self.flatten(self.avgpool(x)))


def _build(name: str, blocks_per_stage: int, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    check_build_args(name, num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                     min_image_size=MIN_IMAGE_SIZE)
    return CifarResNet(blocks_per_stage, num_classes, in_channels)


@register_model("resnet20_cifar", input_size=32, min_input_size=MIN_IMAGE_SIZE,
                description="CIFAR ResNet-20 (He et al. 2016, option-A shortcuts), 0.27M parameters")
def resnet20_cifar(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """CIFAR ResNet-20: three stages of 3 basic blocks."""
    return _build("resnet20_cifar", 3, num_classes, in_channels, image_size)


@register_model("resnet32_cifar", input_size=32, min_input_size=MIN_IMAGE_SIZE,
                description="CIFAR ResNet-32 (He et al. 2016, option-A shortcuts), 0.46M parameters")
def resnet32_cifar(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """CIFAR ResNet-32: three stages of 5 basic blocks."""
    return _build("resnet32_cifar", 5, num_classes, in_channels, image_size)


@register_model("resnet44_cifar", input_size=32, min_input_size=MIN_IMAGE_SIZE,
                description="CIFAR ResNet-44 (He et al. 2016, option-A shortcuts), 0.66M parameters")
def resnet44_cifar(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """CIFAR ResNet-44: three stages of 7 basic blocks."""
    return _build("resnet44_cifar", 7, num_classes, in_channels, image_size)


@register_model("resnet56_cifar", input_size=32, min_input_size=MIN_IMAGE_SIZE,
                description="CIFAR ResNet-56 (He et al. 2016, option-A shortcuts), 0.85M parameters")
def resnet56_cifar(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """CIFAR ResNet-56: three stages of 9 basic blocks."""
    return _build("resnet56_cifar", 9, num_classes, in_channels, image_size)
