"""Unscaled rounding: float32 values straight onto a format's grid (no scale, no zero point).

This is what the format tests compare with ml_dtypes and torch casts, and what block formats
use to round their own scales. It runs the same kernels as scaled fake quantization, with
scale 1, in the same (1, 1, N, 1) layout as a per-tensor call, so it exercises the same fused build.
"""

from __future__ import annotations

from typing import Literal

import torch

from quantlens.formats.integer import int_fake_quant
from quantlens.formats.kernels import KernelPath
from quantlens.formats.minifloat import minifloat_fake_quant
from quantlens.formats.registry import get_format
from quantlens.formats.types import BlockFormat, FloatFormat, NumberFormat

Rounding = Literal["nearest_even", "stochastic"]
ROUNDINGS: tuple[str, ...] = ("nearest_even", "stochastic")


def check_rounding(rounding: str) -> None:
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, got {rounding!r}")


def as_float32(x: torch.Tensor) -> torch.Tensor:
    """Inputs are simulated in float32: floating tensors are cast (exact from fp16/bf16), others refused."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"expected a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    return x.detach().to(torch.float32)


def round_to_grid(x: torch.Tensor, fmt: str | NumberFormat, *, rounding: Rounding = "nearest_even",
                  saturate: bool = True, generator: torch.Generator | None = None,
                  path: KernelPath = "auto") -> torch.Tensor:
    """x rounded onto the grid of `fmt` (float32, same shape). Minifloats: nearest-even (or
    stochastic) with subnormals; out-of-range values saturate to +-max, or with saturate=False
    become Inf (E5M2, fp16, bf16) or NaN (E4M3, E8M0) where the format has them. NaN stays NaN.
    Integers: the integer codes clamped to [qmin, qmax]."""
    fmt = get_format(fmt)
    check_rounding(rounding)
    if isinstance(fmt, BlockFormat):
        raise ValueError(f"{fmt.name} is a block format: its values need block scales; use quantize_dequantize")
    x = as_float32(x)
    x4 = x.reshape(1, 1, -1, 1)  # the per-tensor layout of scaling/ (one fused build for both)
    one = torch.ones((1, 1, 1, 1), dtype=torch.float32, device=x.device)
    if isinstance(fmt, FloatFormat):
        out = minifloat_fake_quant(x4, fmt, one, one, rounding=rounding, saturate=saturate,
                                   generator=generator, path=path)
    else:
        out = int_fake_quant(x4, fmt, one, torch.zeros_like(one), rounding=rounding, generator=generator, path=path)
    return out.reshape(x.shape)
