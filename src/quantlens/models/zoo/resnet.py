"""ImageNet ResNets (He et al. 2016) with torchvision's state-dict layout.

Keys: `conv1`, `bn1`, `layer1`..`layer4` of blocks with `conv1/bn1/conv2/bn2` (BasicBlock) or
`conv1/bn1/conv2/bn2/conv3/bn3` (Bottleneck, stride on the 3x3 conv as in "ResNet v1.5"),
projection shortcuts `downsample.0` (1x1 conv) / `downsample.1` (BN), and `fc`. Where
torchvision reuses one ReLU three times per block, each call site here has its own (parameter-free)
ReLU, and the residual sum is an `Add` module; neither changes the keys.
"""

from __future__ import annotations

import torch
from torch import nn

from quantlens.models.registry import register_model
from quantlens.models.zoo.common import check_build_args, init_cnn_weights
from quantlens.nn.ops import Add

MIN_IMAGE_SIZE = 32  # five stride-2 steps: 32 -> 1x1 before the global pool


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                         nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = (_projection(in_channels, planes, stride)
                           if stride != 1 or in_channels != planes else nn.Identity())
        self.add = Add()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(self.add(out, self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = (_projection(in_channels, out_channels, stride)
                           if stride != 1 or in_channels != out_channels else nn.Identity())
        self.add = Add()
        self.relu3 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(self.add(out, self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock] | type[Bottleneck], blocks_per_stage: tuple[int, int, int, int],
                 num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        channels = 64
        stages = []
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), blocks_per_stage, strict=False)):
            stride = 1 if index == 0 else 2
            layers = []
            for block_index in range(blocks):
                layers.append(block(channels, planes, stride if block_index == 0 else 1))
                channels = planes * block.expansion
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(channels, num_classes)
        init_cnn_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 512*expansion, H/32, W/32)
        return self.fc(self.flatten(self.avgpool(x)))


@register_model("resnet18", input_size=224, min_input_size=MIN_IMAGE_SIZE,
                description="ResNet-18 (ImageNet layout, torchvision-compatible keys), 11.2M parameters")
def resnet18(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """ResNet-18: BasicBlocks [2, 2, 2, 2]."""
    check_build_args("resnet18", num_classes=num_classes, in_channels=in_channels,
                     image_size=image_size, min_image_size=MIN_IMAGE_SIZE)
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, in_channels)


@register_model("resnet50", input_size=224, min_input_size=MIN_IMAGE_SIZE,
                description="ResNet-50 (ImageNet layout, torchvision-compatible keys), 23.5M parameters")
def resnet50(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """ResNet-50: Bottlenecks [3, 4, 6, 3]."""
    check_build_args("resnet50", num_classes=num_classes, in_channels=in_channels,
                     image_size=image_size, min_image_size=MIN_IMAGE_SIZE)
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels)
