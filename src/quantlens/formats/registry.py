"""The format table: name -> format object, filled by small factories.

A new format is one factory call plus `register_format` (or `FORMATS.add(name, fmt)`); nothing
else changes. `get_format` accepts a name or an already built format, so every API taking a
format takes either.
"""

from __future__ import annotations

import re

from quantlens.errors import ConfigError
from quantlens.formats.types import BlockFormat, ElementFormat, FloatFormat, IntFormat, NumberFormat, Specials
from quantlens.registry import Registry

FORMATS: Registry[NumberFormat] = Registry("number format")


def register_format(fmt: NumberFormat) -> NumberFormat:
    """Put `fmt` in the table under `fmt.name` (warns when that name held another format)."""
    return FORMATS.add(fmt.name, fmt)


def get_format(fmt: str | NumberFormat) -> NumberFormat:
    """The format called `fmt`; unknown names raise UnknownNameError listing the known ones."""
    if isinstance(fmt, (IntFormat, FloatFormat, BlockFormat)):
        return fmt
    if not isinstance(fmt, str):
        raise TypeError(f"a format is a name or a format object, got {type(fmt).__name__}")
    return FORMATS.get(fmt)


def natural_key(name: str) -> tuple:
    """Sort key reading digit runs as numbers: int2 < int4 < int10 < int16 (not int10 < int16 < int2)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def format_names(pattern: str = "*") -> list[str]:
    """Registered names matching a glob, in natural order (e.g. "mx*", "int*", "fp8_*")."""
    return sorted(FORMATS.names(pattern), key=natural_key)


def int_format(bits: int, signed: bool = True, narrow_range: bool = False, symmetric: bool | None = None,
               name: str | None = None) -> IntFormat:
    """A `bits`-bit integer (2..16). `symmetric` defaults to `signed` (signed: zero point 0,
    unsigned: fitted zero point). Default name: int8, uint8, int8_narrow, int8_asym, uint8_sym."""
    symmetric = signed if symmetric is None else symmetric
    if name is None:
        name = f"{'int' if signed else 'uint'}{bits}" + ("_narrow" if narrow_range else "")
        name += "" if symmetric == signed else ("_asym" if signed else "_sym")
    return IntFormat(name=name, bits=bits, signed=signed, narrow_range=narrow_range, symmetric=symmetric)


def float_format(exp_bits: int, man_bits: int, bias: int | None = None, *, signed: bool = True,
                 specials: Specials | str = Specials.IEEE, has_zero: bool = True,
                 name: str | None = None) -> FloatFormat:
    """A minifloat with any exponent/mantissa split; bias defaults to the IEEE 2^(exp_bits-1) - 1.
    Default name: e{exp}m{man}[_b{bias}][_fn|_finite][_unsigned][_nozero]."""
    if not isinstance(exp_bits, int) or not 1 <= exp_bits <= 8:
        raise ConfigError(f"float_format: exp_bits must be an integer in 1..8, got {exp_bits!r}")
    specials = Specials(specials)
    default_bias = (1 << (exp_bits - 1)) - 1
    bias = default_bias if bias is None else bias
    if name is None:
        name = f"e{exp_bits}m{man_bits}" + ("" if bias == default_bias else f"_b{bias}")
        name += {Specials.IEEE: "", Specials.FINITE_NAN: "_fn", Specials.FINITE: "_finite"}[specials]
        name += ("" if signed else "_unsigned") + ("" if has_zero else "_nozero")
    return FloatFormat(name=name, exp_bits=exp_bits, man_bits=man_bits, bias=bias, signed=signed,
                       specials=specials, has_zero=has_zero)


def mx_format(element: ElementFormat, block_size: int = 32, name: str | None = None) -> BlockFormat:
    """OCP Microscaling: `element`s in blocks sharing an E8M0 power-of-two scale."""
    return BlockFormat(name=name or f"mx_{element.name}", element=element, block_size=block_size,
                       scale_format=E8M0, rule="ocp_mx")


def nvfp4_format(block_size: int = 16, name: str = "nvfp4") -> BlockFormat:
    """NVFP4: E2M1 elements, an E4M3 scale per block of 16, one FP32 per-tensor scale."""
    return BlockFormat(name=name, element=FP4_E2M1, block_size=block_size, scale_format=FP8_E4M3, rule="nvfp4")


# --- the named formats -------------------------------------------------------------------------

for _bits in range(2, 17):
    register_format(int_format(_bits))  # int{n}: signed, symmetric
    register_format(int_format(_bits, signed=False))  # uint{n}: fitted zero point
for _bits in (4, 8):
    register_format(int_format(_bits, narrow_range=True))  # int{n}_narrow: [-(2^(n-1)-1), 2^(n-1)-1]
    register_format(int_format(_bits, symmetric=False))  # int{n}_asym: signed with a zero point

FP8_E4M3 = register_format(float_format(4, 3, specials="fn", name="fp8_e4m3"))  # OCP E4M3fn, max 448
FP8_E5M2 = register_format(float_format(5, 2, name="fp8_e5m2"))  # IEEE-like, max 57344, Inf/NaN
# E3M4 as in Intel's FP8 study of 75 networks (marginally better than E4M3 for vision): bias 3,
# NaN only at all-ones (the E4M3fn convention), max 30.
FP8_E3M4 = register_format(float_format(3, 4, specials="fn", name="fp8_e3m4"))
FP6_E3M2 = register_format(float_format(3, 2, specials="finite", name="fp6_e3m2"))  # OCP MX, max 28
FP6_E2M3 = register_format(float_format(2, 3, specials="finite", name="fp6_e2m3"))  # OCP MX, max 7.5
FP4_E2M1 = register_format(float_format(2, 1, specials="finite", name="fp4_e2m1"))  # OCP MX, max 6
FP4_E3M0 = register_format(float_format(3, 0, specials="finite", name="fp4_e3m0"))  # 0, 2^-2 .. 2^4
# E8M0 scales: 2^-127 .. 2^127, no sign, no zero, 0xFF is NaN
E8M0 = register_format(float_format(8, 0, specials="fn", signed=False, has_zero=False, name="e8m0"))
FP16 = register_format(float_format(5, 10, name="fp16"))
BF16 = register_format(float_format(8, 7, name="bf16"))

MXINT8_ELEMENT = int_format(8, narrow_range=True)  # MX INT8: codes +-127, read as k * 2^-6
for _name, _element in (("mxfp8_e4m3", FP8_E4M3), ("mxfp8_e5m2", FP8_E5M2), ("mxfp6_e3m2", FP6_E3M2),
                        ("mxfp6_e2m3", FP6_E2M3), ("mxfp4", FP4_E2M1), ("mxint8", MXINT8_ELEMENT)):
    register_format(mx_format(_element, 32, name=_name))
NVFP4 = register_format(nvfp4_format())
