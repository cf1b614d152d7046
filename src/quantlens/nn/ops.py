"""Module forms of the functional operations that sit between layers.

Models in the zoo use these instead of `a + b` or `q @ k.T` so that every operation a network
performs is a module: quantization wrappers, layer-wise error reports and profilers can then see
(and quantize) residual adds and attention matmuls, not only convolutions and linears.
"""

from __future__ import annotations

import torch
from torch import nn


class Add(nn.Module):
    """Elementwise a + b (residual connections)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class Mul(nn.Module):
    """Elementwise a * b (squeeze-and-excitation gating)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b


class MatMul(nn.Module):
    """Batched a @ b (attention scores and attention-weighted values)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)
