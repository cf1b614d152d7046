"""Number formats as value objects, their grids and bit patterns, and exact rounding onto them.

    >>> from quantlens.formats import get_format, round_to_grid
    >>> fp8 = get_format("fp8_e4m3")
    >>> fp8.max, fp8.min_normal, fp8.min_subnormal
    (448.0, 0.015625, 0.001953125)

Scales, granularity and fake quantization of whole tensors live one layer down, in
`quantlens.scaling`.
"""

from quantlens.formats.bits import all_codes, decode, encode, grid, nan_code
from quantlens.formats.blocks import MX_SCALES, NVFP4_SCALES, floor_log2, mx_scales, nvfp4_scales
from quantlens.formats.integer import INT_NEAREST, INT_STOCHASTIC
from quantlens.formats.kernels import COMPILE_MIN_NUMEL, Kernel, KernelPath, kernel_status
from quantlens.formats.minifloat import MINIFLOAT_NEAREST, MINIFLOAT_STOCHASTIC
from quantlens.formats.registry import (
    BF16,
    E8M0,
    FORMATS,
    FP4_E2M1,
    FP4_E3M0,
    FP6_E2M3,
    FP6_E3M2,
    FP8_E4M3,
    FP8_E5M2,
    FP16,
    NVFP4,
    float_format,
    format_names,
    get_format,
    int_format,
    mx_format,
    nvfp4_format,
    register_format,
)
from quantlens.formats.rounding import Rounding, round_to_grid
from quantlens.formats.types import BlockFormat, FloatFormat, IntFormat, NumberFormat, Specials

# every elementwise kernel, by name: `kernel_status(KERNELS)` says which run fused right now
KERNELS: dict[str, Kernel] = {
    "minifloat_nearest": MINIFLOAT_NEAREST,
    "minifloat_stochastic": MINIFLOAT_STOCHASTIC,
    "int_nearest": INT_NEAREST,
    "int_stochastic": INT_STOCHASTIC,
    "mx_scales": MX_SCALES,
    "nvfp4_scales": NVFP4_SCALES,
}

__all__ = [
    "BF16", "E8M0", "FORMATS", "FP4_E2M1", "FP4_E3M0", "FP6_E2M3", "FP6_E3M2", "FP8_E4M3", "FP8_E5M2",
    "FP16", "NVFP4", "COMPILE_MIN_NUMEL", "KERNELS", "BlockFormat", "FloatFormat", "IntFormat", "Kernel",
    "KernelPath", "NumberFormat", "Rounding", "Specials", "all_codes", "decode", "encode",
    "float_format", "floor_log2", "format_names", "get_format", "grid", "int_format", "kernel_status", "mx_format",
    "mx_scales", "nan_code", "nvfp4_format", "nvfp4_scales", "register_format", "round_to_grid",
]
