"""Block formats: OCP Microscaling v1.0 (MXFP8/6/4, MXINT8) and NVFP4 scales and elements.

These functions take per-block maxima and blocked tensors; cutting a tensor into blocks along an
axis (with a ragged last block) is the scaling layer's job (scaling/granularity.py).

OCP MX v1.0 (section 6.3), per block of 32 values V:
    shared_exp = floor(log2(max |V|)) - emax_elem      (emax of the element's largest normal)
    X = 2^shared_exp, clamped to E8M0's 2^-127 .. 2^127
    P_i = quantize(V_i / X) to the element format, saturating at its max
An all-zero block gets X = 2^-127 and zero elements. A block holding NaN or +-Inf gets a NaN
scale (E8M0 0xFF), so the whole block decodes to NaN: E8M0 has no infinite scale, and most
element formats no Inf, so an infinite element has no faithful encoding; we choose to flag the
whole block rather than invent one.

Shared-scale rules (`MX_SCALE_RULES`, torchao's ScaleCalculationMode names), amax = max |V|:
    floor   2^(floor(log2 amax) - emax_elem)          the spec: block maxima land in
                                                      [2^emax, 2^(emax+1)) and those above the
                                                      element max saturate (E2M1: 6..8 -> 6)
    ceil    2^(ceil(log2 amax) - emax_elem)           never clips; wastes up to a binade
    even    amax rounded to the element's mantissa    clips only between the max and the next
            width (half to even), then floor          rounding boundary (E2M1: 6..7)
    rceil   amax / max_elem rounded up to a power     never clips (NVIDIA's cuBLAS recipe)
            of two
All four are floor(log2 amax) - emax_elem plus 0 or 1, the 1 decided exactly on amax's binary
significand m in [1, 2): ceil adds it when m > 1, even when m rounds up to 2 (m >= 2 - 2^-(mbits+1);
a tie there goes up under half-to-even too, the largest mbits-bit significand being odd), rceil
when m exceeds the element max's own significand. Measured on 32-element Gaussian blocks with E2M1
elements, the fraction of blocks with a clipped value is about 30% (floor), 13% (even), 0 (ceil,
rceil): see `mx_clipped_block_fraction`.

NVFP4, per tensor and per block of 16:
    tensor_scale = amax_tensor / (448 * 6)                        (FP32)
    block_scale  = e4m3(amax_block / 6 / tensor_scale)            (E4M3, saturating)
    P_i = e2m1(V_i / (block_scale * tensor_scale))
    value_i = (P_i * block_scale) * tensor_scale
Division is multiplication by the float32 reciprocal, as everywhere in quantlens. A zero
tensor_scale (all-zero tensor) is replaced by 1; a block scale that rounds to 0 gives zero
elements; a NaN or Inf anywhere in the tensor makes the tensor scale NaN (all outputs NaN).
"""

from __future__ import annotations

import functools
import math

import torch

from quantlens.errors import ConfigError
from quantlens.formats.integer import int_fake_quant
from quantlens.formats.kernels import Kernel
from quantlens.formats.minifloat import _minifloat_nearest, exp2_exact, kernel_constants, minifloat_fake_quant
from quantlens.formats.registry import FP4_E2M1, FP8_E4M3
from quantlens.formats.types import BlockFormat, FloatFormat

E8M0_MIN_EXP, E8M0_MAX_EXP = -127, 127
NVFP4_TENSOR_DIVISOR = FP8_E4M3.max * FP4_E2M1.max  # 448 * 6 = 2688
MX_SCALE_RULES: tuple[str, ...] = ("floor", "ceil", "even", "rceil")


def floor_log2(a: torch.Tensor) -> torch.Tensor:
    """floor(log2 a) (int32) for positive finite float32 a, exact (subnormals included)."""
    _, e = torch.frexp(a)  # a = f * 2^e, f in [0.5, 1)
    return e.to(torch.int32) - 1


def _mx_scales(lo, hi, emax, bump):
    """X per block from the block's (min, max); emax: int32 0-d tensor, the element's emax;
    bump: float32 [above, at_least]: the shared exponent goes up by one where amax's frexp
    significand (in [0.5, 1)) is > above or >= at_least (the rule, see `_rule_thresholds`)."""
    amax = torch.maximum(-lo, hi)
    finite = torch.isfinite(amax)
    positive = finite & (amax > 0)
    significand, e = torch.frexp(torch.where(positive, amax, torch.ones_like(amax)))  # exact, subnormals too
    up = ((significand > bump[0]) | (significand >= bump[1])).to(torch.int32)
    shared = (e.to(torch.int32) - 1) + up - emax
    shared = torch.where(positive, shared, E8M0_MIN_EXP)  # all-zero block: the smallest scale
    shared = torch.clamp(shared, E8M0_MIN_EXP, E8M0_MAX_EXP)
    return torch.where(finite, exp2_exact(shared), torch.full_like(amax, torch.nan))


def _nvfp4_scales(lo, hi, given_amax, use_given, ip, fp):
    """(block_scale, tensor_scale) from the blocks' (min, max); the per-tensor amax is the
    blocks' maximum unless `use_given` (bool 0-d) picks the calibrated `given_amax`."""
    amax_blocks = torch.maximum(-lo, hi)
    amax_tensor = torch.where(use_given, given_amax, torch.amax(amax_blocks))
    tensor_scale = torch.where(amax_tensor == 0, torch.ones_like(amax_tensor), amax_tensor / NVFP4_TENSOR_DIVISOR)
    tensor_scale = torch.where(torch.isfinite(amax_tensor), tensor_scale, torch.full_like(tensor_scale, torch.nan))
    one = torch.ones_like(tensor_scale)
    block_scale = _minifloat_nearest((amax_blocks / FP4_E2M1.max) / tensor_scale, one, one, ip, fp)  # E4M3
    block_scale = torch.where(torch.isfinite(amax_blocks), block_scale, torch.full_like(block_scale, torch.nan))
    return block_scale, tensor_scale


MX_SCALES = Kernel(_mx_scales)
NVFP4_SCALES = Kernel(_nvfp4_scales)


@functools.lru_cache(maxsize=64)
def _emax_tensor(emax: int, device: torch.device) -> torch.Tensor:
    return torch.tensor(emax, dtype=torch.int32, device=device)


def _element_man_bits(fmt: BlockFormat) -> int:
    """Mantissa bits of the element: a minifloat's, or bits - 2 for fixed-point integers (1.6 for MXINT8)."""
    return fmt.element.man_bits if isinstance(fmt.element, FloatFormat) else fmt.element.bits - 2


@functools.lru_cache(maxsize=64)
def _rule_thresholds(fmt: BlockFormat, rule: str, device: torch.device) -> torch.Tensor:
    """float32 [above, at_least] on amax's frexp significand s in [0.5, 1) (s = m / 2): the
    shared exponent is floor(log2 amax) - emax, plus one where s > above or s >= at_least."""
    never = 2.0  # s < 1 always
    if rule == "floor":
        above, at_least = never, never
    elif rule == "ceil":  # ceil(log2 amax) = floor + 1 unless amax is a power of two (s == 0.5)
        above, at_least = 0.5, never
    elif rule == "even":  # m rounded to mbits bits reaches 2: m >= 2 - 2^-(mbits + 1)
        above, at_least = never, 1.0 - math.ldexp(1.0, -(_element_man_bits(fmt) + 2))
    else:  # rceil: amax <= max_elem * 2^k for the smallest k: one more where m > max_elem's significand
        above, at_least = math.frexp(fmt.max)[0], never
    return torch.tensor([above, at_least], dtype=torch.float32, device=device)


def check_mx_rule(fmt: BlockFormat, rule: str) -> None:
    """A known shared-scale rule for an OCP MX format, else ConfigError."""
    if rule not in MX_SCALE_RULES:
        raise ConfigError(f"MX scale rule must be one of {', '.join(MX_SCALE_RULES)}, got {rule!r}")
    if not isinstance(fmt, BlockFormat) or fmt.rule != "ocp_mx":
        raise ConfigError(f"MX scale rules apply to OCP MX formats, not {getattr(fmt, 'name', fmt)!r}")


def mx_scales_from_range(lo: torch.Tensor, hi: torch.Tensor, fmt: BlockFormat, *, rule: str = "floor",
                         path: str = "auto") -> torch.Tensor:
    """X = 2^shared_exp per block (float32, shape of lo/hi), NaN for blocks holding NaN or Inf;
    rule: one of `MX_SCALE_RULES` (module docstring)."""
    check_mx_rule(fmt, rule)
    device = lo.device
    return MX_SCALES(lo, hi, _emax_tensor(fmt.element_emax, device), _rule_thresholds(fmt, rule, device), path=path)


def mx_scales(amax: torch.Tensor, fmt: BlockFormat, *, rule: str = "floor", path: str = "auto") -> torch.Tensor:
    """X = 2^shared_exp for each block's largest magnitude `amax` (float32, same shape)."""
    return mx_scales_from_range(amax, amax, fmt, rule=rule, path=path)


def block_amax_last_axis(x: torch.Tensor, block_size: int) -> torch.Tensor:
    """max |x| per block of `block_size` along the last axis: (..., D) -> (..., ceil(D / block_size)).
    Block b covers [b * block_size, (b + 1) * block_size) like scaling's PerBlock(block_size, -1);
    a ragged last block is padded with zeros (which leave its maximum unchanged). NaN propagates."""
    if x.ndim == 0:
        x = x.reshape(1)
    d = x.shape[-1]
    blocks = -(-d // block_size)
    pad = blocks * block_size - d
    if pad:
        x = torch.nn.functional.pad(x, (0, pad))
    return x.abs().reshape(*x.shape[:-1], blocks, block_size).amax(dim=-1)


def mx_clipped_block_fraction(x: torch.Tensor, fmt: BlockFormat, rule: str = "floor", *,
                              path: str = "auto") -> float:
    """Fraction of MX blocks (along the last axis, ragged last block included) whose largest
    magnitude exceeds element max * block scale, i.e. saturates when quantized under `rule`.
    NaN when any block holds NaN or Inf (such blocks have no scale to judge); 0.0 for no blocks."""
    check_mx_rule(fmt, rule)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"expected a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    amax = block_amax_last_axis(x.detach().to(torch.float32), fmt.block_size)
    if amax.numel() == 0:
        return 0.0
    scale = mx_scales(amax, fmt, rule=rule, path=path)
    clipped = (amax > scale * fmt.max).to(torch.float32)  # scale a power of two: the product is exact
    return float(torch.where(torch.isfinite(scale), clipped, torch.nan).mean())


def nvfp4_scales_from_range(lo: torch.Tensor, hi: torch.Tensor, amax_tensor: torch.Tensor | float | None = None,
                            *, path: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """(block_scale E4M3 values per block, tensor_scale 0-d), both float32. `amax_tensor`: a
    calibrated per-tensor amax, or None for the blocks' own maximum."""
    device = lo.device
    if lo.numel() == 0:
        return torch.zeros_like(lo), torch.ones((), dtype=torch.float32, device=device)
    use_given = torch.tensor(amax_tensor is not None, device=device)
    given = torch.as_tensor(0.0 if amax_tensor is None else amax_tensor, dtype=torch.float32, device=device).reshape(())
    ip, fp = kernel_constants(FP8_E4M3, True, device)
    return NVFP4_SCALES(lo, hi, given, use_given, ip, fp, path=path)


def nvfp4_scales(amax_blocks: torch.Tensor, amax_tensor: torch.Tensor | float | None = None, *,
                 path: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """(block_scale, tensor_scale) from each block's largest magnitude (see the module docstring)."""
    return nvfp4_scales_from_range(amax_blocks, amax_blocks, amax_tensor, path=path)


def block_element_fake_quant(x, fmt: BlockFormat, scale, tensor_scale, *, rounding: str, saturate: bool,
                             generator: torch.Generator | None, path: str) -> torch.Tensor:
    """Elements of blocked x -> (element(x / (scale * tensor_scale)) * scale) * tensor_scale,
    fused. Integer elements (MXINT8, whose tensor_scale is 1) are fixed point: code k is worth
    k * 2^element_step_log2."""
    elem = fmt.element
    if isinstance(elem, FloatFormat):
        return minifloat_fake_quant(x, elem, scale, tensor_scale, rounding=rounding, saturate=saturate,
                                    generator=generator, path=path)
    return int_fake_quant(x, elem, scale, x.new_zeros(()), rounding=rounding, generator=generator, path=path,
                          code_value=2.0**fmt.element_step_log2)
