"""Models with non-trivial BatchNorm statistics, and how far two outputs are apart."""

from __future__ import annotations

import torch
from torch import nn


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so that folding has real work to do."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) * 2.5 + 0.2)
            m.weight.data.copy_(torch.rand(c, generator=g) * 1.7 + 0.3)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.5)
    return model.eval()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max())
