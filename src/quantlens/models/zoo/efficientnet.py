"""EfficientNet-B0 (Tan & Le 2019) with torchvision's state-dict layout.

Keys: `features.0` (stem conv-BN-SiLU), `features.1`..`features.7` (stages of MBConv blocks, each
`block.N`: [1x1 expand conv-BN-SiLU,] depthwise conv-BN-SiLU, squeeze-excitation `fc1`/`fc2`,
1x1 projection conv-BN), `features.8` (1x1 conv-BN-SiLU to 1280), `classifier.1` (after dropout).
The SE gate multiplies through a `Mul` module and the residual sums through an `Add` module.
"""

from __future__ import annotations

import torch
from torch import nn

from quantlens.models.registry import register_model
from quantlens.models.zoo.common import ConvBN, ConvBNAct, check_build_args, init_cnn_weights
from quantlens.nn.ops import Add, Mul

MIN_IMAGE_SIZE = 32

# (expansion, kernel, first stride, in channels, out channels, repeats), table 1 of the paper
B0_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)


class DropPath(nn.Module):
    """Stochastic depth per sample ("row" mode): in training, zero a whole residual branch with
    probability `p` and scale survivors by 1/(1-p); the identity in eval mode."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        keep = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        keep = keep.bernoulli_(survival).div_(survival)  # (B, 1, 1, 1)
        return x * keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.activation = nn.SiLU()
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.scale_activation = nn.Sigmoid()
        self.mul = Mul()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.avgpool(x)  # (B, C, 1, 1)
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(scale))))
        return self.mul(x, scale)  # broadcast over H, W


class MBConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expansion: int,
                 drop_path: float) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if hidden != in_channels:
            layers.append(ConvBNAct(in_channels, hidden, kernel_size=1, activation=nn.SiLU))
        layers += [
            ConvBNAct(hidden, hidden, kernel_size, stride, groups=hidden, activation=nn.SiLU),  # depthwise
            SqueezeExcitation(hidden, max(1, in_channels // 4)),
            ConvBN(hidden, out_channels, kernel_size=1),  # linear projection
        ]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels
        if self.use_residual:
            self.stochastic_depth = DropPath(drop_path)
            self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_residual:
            out = self.add(self.stochastic_depth(out), x)
        return out


class EfficientNet(nn.Module):
    def __init__(self, stages: tuple[tuple[int, int, int, int, int, int], ...], num_classes: int,
                 in_channels: int, drop_path_rate: float = 0.2, dropout: float = 0.2,
                 last_channels: int = 1280) -> None:
        super().__init__()
        total_blocks = sum(stage[-1] for stage in stages)
        layers: list[nn.Module] = [ConvBNAct(in_channels, stages[0][3], stride=2, activation=nn.SiLU)]
        block_id = 0
        for expansion, kernel, first_stride, stage_in, stage_out, repeats in stages:
            blocks = []
            for index in range(repeats):
                # drop-path probability grows linearly with depth, from 0 at the first block
                blocks.append(MBConv(stage_in if index == 0 else stage_out, stage_out, kernel,
                                     first_stride if index == 0 else 1, expansion,
                                     drop_path_rate * block_id / total_blocks))
                block_id += 1
            layers.append(nn.Sequential(*blocks))
        layers.append(ConvBNAct(stages[-1][4], last_channels, kernel_size=1, activation=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last_channels, num_classes))
        init_cnn_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 1280, H/32, W/32)
        return self.classifier(self.flatten(self.avgpool(x)))


@register_model("efficientnet_b0", input_size=224, min_input_size=MIN_IMAGE_SIZE,
                description="EfficientNet-B0 (torchvision-compatible keys), 4.0M parameters")
def efficientnet_b0(*, num_classes: int, in_channels: int, image_size: int, drop_path_rate: float = 0.2,
                    dropout: float = 0.2) -> nn.Module:
    """EfficientNet-B0; options: `drop_path_rate` (stochastic depth at the last block), `dropout`."""
    check_build_args("efficientnet_b0", num_classes=num_classes, in_channels=in_channels,
                     image_size=image_size, min_image_size=MIN_IMAGE_SIZE)
    return EfficientNet(B0_STAGES, num_classes, in_channels, drop_path_rate, dropout)
