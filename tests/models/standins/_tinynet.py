"""The small network every stand-in package builds."""
import torch
from torch import nn


class TinyNet(nn.Module):
    """conv -> BN -> ReLU -> global mean -> linear head (`head_name`)."""

    def __init__(self, num_classes=1000, in_chans=3, head_name="head", **_):
        super().__init__()
        self.num_classes, self.head_name = num_classes, head_name
        self.conv_stem = nn.Conv2d(in_chans, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        setattr(self, head_name, nn.Linear(8, num_classes))

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv_stem(x))).mean((2, 3))
        return getattr(self, self.head_name)(x)
