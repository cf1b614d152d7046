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

import torch

from quantlens.formats.integer import int_fake_quant
from quantlens.formats.kernels import Kernel
from quantlens.formats.minifloat import _minifloat_nearest, exp2_exact, kernel_constants, minifloat_fake_quant
from quantlens.formats.registry import FP4_E2M1, FP8_E4M3
from quantlens.formats.types import BlockFormat, FloatFormat

E8M0_MIN_EXP, E8M0_MAX_EXP = -127, 127
NVFP4_TENSOR_DIVISOR = FP8_E4M3.max * FP4_E2M1.max  # 448 * 6 = 2688


def floor_log2(a: torch.Tensor) -> torch.Tensor:
    """floor(log2 a) (int32) for positive finite float32 a, exact (subnormals included)."""
    _, e = torch.frexp(a)  # a = f * 2^e, f in [0.5, 1)
    return e.to(torch.int32) - 1


def _mx_scales(lo, hi, emax):
    """X per block from the block's (min, max); emax: int32 0-d tensor, the element's emax."""
    amax = torch.maximum(-lo, hi)
    finite = torch.isfinite(amax)
    positive = finite & (amax > 0)
    shared = floor_log2(torch.where(positive, amax, torch.ones_like(amax))) - emax
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


def mx_scales_from_range(lo: torch.Tensor, hi: torch.Tensor, fmt: BlockFormat, *, path: str = "auto") -> torch.Tensor:
    """X = 2^shared_exp per block (float32, shape of lo/hi), NaN for blocks holding NaN or Inf."""
    return MX_SCALES(lo, hi, _emax_tensor(fmt.element_emax, lo.device), path=path)


def mx_scales(amax: torch.Tensor, fmt: BlockFormat, *, path: str = "auto") -> torch.Tensor:
    """X = 2^shared_exp for each block's largest magnitude `amax` (float32, same shape)."""
    return mx_scales_from_range(amax, amax, fmt, path=path)


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
