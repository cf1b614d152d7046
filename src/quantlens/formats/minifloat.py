"""Round float32 values onto a minifloat grid (any exponent/mantissa split), exactly.

Round to nearest even, for v = x / scale (computed as x * (1/scale), see scaling/), on the bits
of |v|: at or above the format's smallest normal 2^emin the float32 significand is rounded to
man_bits with integer arithmetic (add half an ulp of the target, minus one unless the kept lowest
bit is odd, then clear the dropped bits; a carry moves into the exponent, which is the next grid
value). Below 2^emin the grid is evenly spaced (subnormals) at step = 2^(emin - man_bits), so
`round(|v| / step) * step` is exact there. (The integer form needs a normal float32 |v|: with
emin = -127 (E8M0) the step form also covers [2^-127, 2^-126), whose spacing is the same step.)
Overflow, the sign, NaN and the no-zero case (E8M0) are settled on the result. Every operation
is exact, so the result is the correctly rounded grid value and the eager and fused
(torch.compile) forms agree.

Stochastic rounding works in units of the local grid spacing 2^(e - man_bits), e the binade
exponent floored at emin: |v| / spacing is exact, and it rounds up with probability equal to the
fraction above the lower neighbour.

Ties: "even" means an even integer significand at the spacing of the lower neighbour, which is
IEEE round-half-to-even for man_bits >= 1. With man_bits == 0 the significand 1 is odd, so a tie
between 2^e and 2^(e+1) goes up, the rule ml_dtypes and torch use for E8M0.

Assumes IEEE float32 with subnormals (torch's default; `torch.set_flush_denormal(True)` would
flush subnormal inputs and grid values).
"""

from __future__ import annotations

import functools
import math
import struct

import torch

from quantlens.formats.kernels import Kernel
from quantlens.formats.types import FloatFormat

# Layout of the two small constant tensors every kernel call takes (built by `kernel_constants`).
_I_MAN, _I_EMIN, _I_SIGN, _I_UNSIGNED, _I_SHIFT, _I_HALF, _I_LSB, _I_KEEP, _I_MIN_NORMAL = range(9)  # int32
# float32
_F_MAX, _F_OVERFLOW, _F_FLOOR, _F_BELOW_BOUND, _F_BELOW_VALUE, _F_SUB_STEP, _F_SUB_INV_A, _F_SUB_INV_B = range(8)
_INF_BITS = 0x7F800000

_SIGN_BIT = -(1 << 31)  # 0x80000000 as an int32
_ABS_MASK = 0x7FFFFFFF


def exp2_exact(e: torch.Tensor) -> torch.Tensor:
    """2^e as float32 for integer e in [-149, 127], built from bits (subnormal below 2^-126)."""
    normal = (torch.clamp(e, -126, 127) + 127) << 23
    subnormal = 1 << torch.clamp(e + 149, 0, 22)
    return torch.where(e >= -126, normal, subnormal).view(torch.float32)


def _grid_step(mag: torch.Tensor, ip: torch.Tensor) -> torch.Tensor:
    # mag: int32 bits of |v|. Biased exponent field -> binade; float32 subnormals (field 0) and
    # the format's subnormal range land on emin; Inf/NaN patterns (field 255) are capped at 127.
    e = torch.clamp(torch.maximum((mag >> 23) - 127, ip[_I_EMIN]), max=127)
    return exp2_exact(e - ip[_I_MAN])


def _below_range(v: torch.Tensor, ip: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    # unsigned formats only: values under the grid become its lowest value, or NaN (see constants)
    below = (v <= fp[_F_BELOW_BOUND]) & (ip[_I_UNSIGNED] != 0)
    return torch.where(below, fp[_F_BELOW_VALUE], v)


def inverse_scale(scale: torch.Tensor) -> torch.Tensor:
    """1 / scale in float32 (0 where scale is 0, so a zero scale gives zero outputs)."""
    return torch.where(scale == 0, torch.zeros_like(scale), 1.0 / scale)


def _finish(q, sign, fp, scale, tensor_scale):
    # q: rounded magnitude (float32, NaN stays NaN); sign: int32 sign bits (0 for unsigned formats)
    q = torch.where(q > fp[_F_MAX], fp[_F_OVERFLOW], q)  # saturate, or Inf / NaN
    q = torch.maximum(q, fp[_F_FLOOR])  # formats without zero: tiny values go up to the minimum
    q = (q.view(torch.int32) | sign).view(torch.float32)
    return (q * scale) * tensor_scale


def _round_nearest_even(mag: torch.Tensor, ip: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    # mag: int32 bits of |v| -> float32 |v| rounded onto the grid (before overflow handling)
    lsb = (mag >> ip[_I_SHIFT]) & ip[_I_LSB]  # the lowest kept bit: ties go to even
    normal = ((mag + ip[_I_HALF] + lsb) & ip[_I_KEEP]).view(torch.float32)
    normal = torch.where(mag >= _INF_BITS, mag.view(torch.float32), normal)  # Inf and NaN unchanged
    # |v| / step as two exact multiplications by powers of two (1 / step can exceed float32's range)
    units = (mag.view(torch.float32) * fp[_F_SUB_INV_A]) * fp[_F_SUB_INV_B]
    subnormal = torch.round(units) * fp[_F_SUB_STEP]
    return torch.where(mag < ip[_I_MIN_NORMAL], subnormal, normal)


def _minifloat_nearest(x, scale, tensor_scale, ip, fp):
    """(round_nearest_even(x / (scale * tensor_scale)) * scale) * tensor_scale, the division done
    as a multiplication by the float32 reciprocal; scales broadcast against x."""
    v = _below_range(x * inverse_scale(scale * tensor_scale), ip, fp)
    bits = v.view(torch.int32)
    q = _round_nearest_even(bits & _ABS_MASK, ip, fp)
    return _finish(q, bits & ip[_I_SIGN], fp, scale, tensor_scale)


def _minifloat_stochastic(x, u, scale, tensor_scale, ip, fp):
    """As `_minifloat_nearest`, but rounds up with probability equal to the distance from the
    lower neighbour in steps; u: uniform [0, 1) float32, same shape as x."""
    v = _below_range(x * inverse_scale(scale * tensor_scale), ip, fp)
    bits = v.view(torch.int32)
    mag = bits & _ABS_MASK
    step = _grid_step(mag, ip)
    t = mag.view(torch.float32) / step  # exact: |v| in units of the local spacing
    low = torch.floor(t)
    q = (low + (u < (t - low)).to(torch.float32)) * step
    return _finish(q, bits & ip[_I_SIGN], fp, scale, tensor_scale)


MINIFLOAT_NEAREST = Kernel(_minifloat_nearest)
MINIFLOAT_STOCHASTIC = Kernel(_minifloat_stochastic)


@functools.lru_cache(maxsize=512)
def kernel_constants(fmt: FloatFormat, saturate: bool, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(int32 [man_bits, emin, sign_mask, unsigned], float32 [max, overflow, floor, below_bound,
    below_value]) for the kernels. Read-only: shared between calls."""
    if saturate or not fmt.has_nan and not fmt.has_inf:
        overflow = fmt.max  # FINITE formats have nothing else to overflow to (ml_dtypes agrees)
    else:
        overflow = math.inf if fmt.has_inf else math.nan
    if fmt.has_zero:
        floor, below_bound, below_value = 0.0, -math.ldexp(1.0, -149), 0.0  # v < 0 -> 0
    else:
        # no zero (E8M0): v <= 0 has no nearest value: the minimum when saturating, else NaN
        floor, below_bound = fmt.min_normal, 0.0
        below_value = fmt.min_normal if saturate else math.nan
    ip = torch.tensor([fmt.man_bits, fmt.emin, _SIGN_BIT if fmt.signed else 0, 0 if fmt.signed else 1,
                       *_significand_rounding(fmt.man_bits), _float32_bits(math.ldexp(1.0, max(fmt.emin, -126)))],
                      dtype=torch.int32, device=device)
    inv_step_log2 = fmt.man_bits - fmt.emin  # 1 / step = 2^inv_step_log2, split to stay finite
    inv_a = min(inv_step_log2, 127)
    fp = torch.tensor([fmt.max, overflow, floor, below_bound, below_value, math.ldexp(1.0, -inv_step_log2),
                       math.ldexp(1.0, inv_a), math.ldexp(1.0, inv_step_log2 - inv_a)],
                      dtype=torch.float32, device=device)
    return ip, fp


def _significand_rounding(man_bits: int) -> tuple[int, int, int, int]:
    """(shift, half, lsb_mask, keep_mask) rounding a float32 significand to man_bits on its bits:
    bits + half + ((bits >> shift) & lsb_mask), then & keep_mask. man_bits 0 (E8M0) rounds ties up."""
    shift = 23 - man_bits
    if shift == 0:
        return 0, 0, 0, -1
    if man_bits == 0:
        return shift, 1 << (shift - 1), 0, ~((1 << shift) - 1)
    return shift, (1 << (shift - 1)) - 1, 1, ~((1 << shift) - 1)


def _float32_bits(value: float) -> int:
    return struct.unpack("<i", struct.pack("<f", value))[0]


def minifloat_fake_quant(x, fmt: FloatFormat, scale, tensor_scale, *, rounding: str, saturate: bool,
                         generator: torch.Generator | None, path: str) -> torch.Tensor:
    """Fused x -> (grid(x / (scale * tensor_scale)) * scale) * tensor_scale for float32 x (any
    shape; the scales broadcast against it). With unit scales this returns grid values."""
    ip, fp = kernel_constants(fmt, saturate, x.device)
    if rounding == "nearest_even":
        return MINIFLOAT_NEAREST(x, scale, tensor_scale, ip, fp, path=path)
    u = torch.rand(x.shape, generator=generator, dtype=torch.float32, device=x.device)
    return MINIFLOAT_STOCHASTIC(x, u, scale, tensor_scale, ip, fp, path=path)
