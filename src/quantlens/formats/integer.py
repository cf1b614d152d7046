"""Round float32 values onto an integer grid: q = clamp(round(x / scale) + zero_point, qmin, qmax).

By default x is divided by the scale by multiplying with the float32 reciprocal of the scale, as
torch's fake_quantize kernels do (so `torch.fake_quantize_per_tensor_affine` is an exact
reference); for power-of-two scales this is exact division. With `divide=True` the division is a
true float32 division x / scale, as ONNX Runtime's QuantizeLinear computes it: the two differ on
values whose quotient lies within an ulp of a rounding tie (x * (1/s) carries the rounding error
of 1/s), so a simulation that must match a deployed ONNX Runtime model divides. Rounding is to
nearest, ties to even, and the zero point is added after rounding (clamping before or after the
rounding gives the same codes: the bounds are integers). NaN propagates (torch's own
fake_quantize maps NaN to qmin); +-Inf saturate to qmax/qmin. A zero scale gives zero outputs
(NaN for NaN or infinite inputs) in both forms.
"""

from __future__ import annotations

import functools

import torch

from quantlens.formats.kernels import Kernel
from quantlens.formats.minifloat import inverse_scale
from quantlens.formats.types import IntFormat


def _clamp(q, qlim):
    # qlim: float32 [qmin, qmax, code_value]; maximum/minimum propagate NaN
    return torch.minimum(torch.maximum(q, qlim[0]), qlim[1])


def divide_by_scale(x, step):
    """x / step as a true float32 division; where step is 0, x * 0 (0, or NaN for NaN/Inf x), as
    the reciprocal form gives."""
    zero = step == 0
    return torch.where(zero, x * 0.0, x / torch.where(zero, torch.ones_like(step), step))


def _int_nearest(x, scale, zero_point, qlim):
    """(clamp(round_half_even(x / step) + zero_point) - zero_point) * step with step = scale *
    code_value (code_value 1, or 2^-6 for MXINT8's fixed-point codes); the division done as a
    multiplication by the float32 reciprocal; zero_point (any dtype, integer values) and scale
    broadcast against x."""
    step = scale * qlim[2]
    zp = zero_point.to(torch.float32)
    q = _clamp(torch.round(x * inverse_scale(step)) + zp, qlim)
    return (q - zp) * step


def _int_nearest_divide(x, scale, zero_point, qlim):
    """As `_int_nearest` with a true division x / step (ONNX Runtime's QuantizeLinear)."""
    step = scale * qlim[2]
    zp = zero_point.to(torch.float32)
    q = _clamp(torch.round(divide_by_scale(x, step)) + zp, qlim)
    return (q - zp) * step


def _int_stochastic(x, u, scale, zero_point, qlim):
    """As `_int_nearest`, rounding up with probability frac(x / step); u uniform [0, 1)."""
    step = scale * qlim[2]
    zp = zero_point.to(torch.float32)
    v = x * inverse_scale(step)
    low = torch.floor(v)
    q = _clamp(low + (u < (v - low)).to(torch.float32) + zp, qlim)
    return (q - zp) * step


def _int_stochastic_divide(x, u, scale, zero_point, qlim):
    """As `_int_stochastic` with a true division x / step."""
    step = scale * qlim[2]
    zp = zero_point.to(torch.float32)
    v = divide_by_scale(x, step)
    low = torch.floor(v)
    q = _clamp(low + (u < (v - low)).to(torch.float32) + zp, qlim)
    return (q - zp) * step


INT_NEAREST = Kernel(_int_nearest)
INT_STOCHASTIC = Kernel(_int_stochastic)
INT_NEAREST_DIVIDE = Kernel(_int_nearest_divide)
INT_STOCHASTIC_DIVIDE = Kernel(_int_stochastic_divide)


@functools.lru_cache(maxsize=256)
def int_limits(fmt: IntFormat, code_value: float, device: torch.device) -> torch.Tensor:
    """float32 [qmin, qmax, code_value] (read-only, shared between calls)."""
    return torch.tensor([fmt.qmin, fmt.qmax, code_value], dtype=torch.float32, device=device)


def int_fake_quant(x, fmt: IntFormat, scale, zero_point, *, rounding: str, generator: torch.Generator | None,
                   path: str, code_value: float = 1.0, divide: bool = False) -> torch.Tensor:
    """Fused x -> (q - zero_point) * scale * code_value for float32 x; scale and zero_point
    broadcast against x. With scale 1 this returns (q - zero_point) * code_value exactly.
    divide: x / scale as a true float32 division (ONNX Runtime) instead of x * (1 / scale)."""
    qlim = int_limits(fmt, code_value, x.device)
    if rounding == "nearest_even":
        kernel = INT_NEAREST_DIVIDE if divide else INT_NEAREST
        return kernel(x, scale, zero_point, qlim, path=path)
    u = torch.rand(x.shape, generator=generator, dtype=torch.float32, device=x.device)
    kernel = INT_STOCHASTIC_DIVIDE if divide else INT_STOCHASTIC
    return kernel(x, u, scale, zero_point, qlim, path=path)
