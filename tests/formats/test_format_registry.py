"""The format table, the factories and the numbers each named format must have."""

from __future__ import annotations

import math

import pytest
import torch

from quantlens.errors import ConfigError, QuantlensError, UnknownNameError
from quantlens.formats import (
    FORMATS,
    BlockFormat,
    FloatFormat,
    IntFormat,
    Specials,
    float_format,
    format_names,
    get_format,
    int_format,
    mx_format,
)

REQUIRED = [
    "int8", "uint8", "int4", "int2", "int16", "fp8_e4m3", "fp8_e5m2", "fp6_e3m2", "fp6_e2m3", "fp4_e2m1",
    "fp4_e3m0", "e8m0", "fp16", "bf16", "mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4",
    "mxint8", "nvfp4",
] + [f"int{b}" for b in range(2, 17)] + [f"uint{b}" for b in range(2, 17)]

# name: (max, min_normal, min_subnormal, number of distinct finite values)
FLOATS = {
    "fp8_e4m3": (448.0, 2.0**-6, 2.0**-9, 253),
    "fp8_e5m2": (57344.0, 2.0**-14, 2.0**-16, 247),
    "fp6_e3m2": (28.0, 2.0**-2, 2.0**-4, 63),
    "fp6_e2m3": (7.5, 1.0, 2.0**-3, 63),
    "fp4_e2m1": (6.0, 1.0, 0.5, 15),
    "fp4_e3m0": (16.0, 0.25, 0.25, 15),
    "e8m0": (2.0**127, 2.0**-127, 2.0**-127, 255),
    "fp16": (65504.0, 2.0**-14, 2.0**-24, 63487),
    "bf16": (float(torch.finfo(torch.bfloat16).max), 2.0**-126, 2.0**-133, 65279),
}


@pytest.mark.parametrize("name", REQUIRED)
def test_required_names_resolve(name):
    fmt = get_format(name)
    assert fmt.name == name
    assert get_format(fmt) is fmt


def test_unknown_name_lists_close_and_known_names():
    with pytest.raises(UnknownNameError) as err:
        get_format("fp8_e4m")
    message = str(err.value)
    assert "fp8_e4m3" in message and "did you mean" in message and "known:" in message and "nvfp4" in message
    assert isinstance(err.value, QuantlensError)


def test_glob_queries():
    assert format_names("mx*") == ["mxfp4", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp8_e4m3", "mxfp8_e5m2", "mxint8"]
    assert "fp8_e4m3" in format_names("fp8_*")


@pytest.mark.parametrize("name", list(FLOATS))
def test_float_constants_match_the_enumerated_grid(name):
    fmt = get_format(name)
    top, normal, subnormal, count = FLOATS[name]
    assert (fmt.max, fmt.min_normal, fmt.min_subnormal) == (top, normal, subnormal)
    grid = fmt.grid().double()
    assert len(grid) == count
    assert grid.max().item() == top
    assert grid[grid > 0].min().item() == subnormal
    assert torch.all(grid[1:] > grid[:-1])


def test_named_float_semantics():
    e4m3, e5m2, e8m0 = get_format("fp8_e4m3"), get_format("fp8_e5m2"), get_format("e8m0")
    assert (e4m3.exp_bits, e4m3.man_bits, e4m3.bias, e4m3.specials) == (4, 3, 7, Specials.FINITE_NAN)
    assert not e4m3.has_inf and e4m3.has_nan and e4m3.emax == 8
    assert e5m2.has_inf and e5m2.has_nan and e5m2.emax == 15
    assert (e8m0.signed, e8m0.has_zero, e8m0.bias, e8m0.bits) == (False, False, 127, 8)
    for name in ("fp6_e3m2", "fp6_e2m3", "fp4_e2m1", "fp4_e3m0"):
        fmt = get_format(name)
        assert not fmt.has_inf and not fmt.has_nan
    assert [get_format(n).emax for n in ("fp6_e3m2", "fp6_e2m3", "fp4_e2m1")] == [4, 2, 2]


@pytest.mark.parametrize("bits", range(2, 17))
def test_integer_ranges(bits):
    signed, unsigned = get_format(f"int{bits}"), get_format(f"uint{bits}")
    assert (signed.qmin, signed.qmax) == (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    assert (unsigned.qmin, unsigned.qmax) == (0, 2**bits - 1)
    assert signed.symmetric and not unsigned.symmetric
    assert len(signed.grid()) == 2**bits
    assert (signed.max, signed.min_normal, signed.min_subnormal) == (2 ** (bits - 1) - 1, 1.0, 1.0)


def test_integer_variants():
    assert (get_format("int8_narrow").qmin, get_format("int8_narrow").qmax) == (-127, 127)
    assert not get_format("int8_asym").symmetric
    assert int_format(8, signed=False, narrow_range=True).qmin == 1
    assert int_format(8, signed=False, symmetric=True).name == "uint8_sym"


@pytest.mark.parametrize("bits", [0, 1, 17, 32, 8.0])
def test_integer_bits_out_of_range_refused(bits):
    with pytest.raises(ConfigError, match="bits"):
        int_format(bits)


@pytest.mark.parametrize("exp_bits, man_bits, bias, match", [
    (0, 3, None, "exp_bits"), (9, 3, None, "exp_bits"), (4, 24, None, "man_bits"), (4, -1, None, "man_bits"),
    (5, 2, -120, "float32"), (5, 2, 150, "float32"), (8, 10, 130, "float32"),
])
def test_float_fields_refused(exp_bits, man_bits, bias, match):
    with pytest.raises(ConfigError, match=match):
        float_format(exp_bits, man_bits, bias)


def test_any_split_and_bias():
    fmt = float_format(3, 4, bias=5, specials="finite")
    assert fmt.name == "e3m4_b5_finite" and fmt.emin == -4 and fmt.emax == 2
    assert fmt.max == (1 + 15 / 16) * 4 and fmt.min_subnormal == 2.0**-8
    assert len(fmt.grid()) == 2 * 128 - 1


def test_block_formats():
    mxfp4, nvfp4, mxint8 = get_format("mxfp4"), get_format("nvfp4"), get_format("mxint8")
    assert isinstance(mxfp4, BlockFormat) and mxfp4.block_size == 32 and mxfp4.scale_format is get_format("e8m0")
    assert nvfp4.block_size == 16 and nvfp4.scale_format is get_format("fp8_e4m3") and nvfp4.rule == "nvfp4"
    mx_names = ("mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4", "mxint8")
    assert [get_format(n).element_emax for n in mx_names] == [8, 15, 4, 2, 2, 0]
    assert mxint8.max == 127 / 64 and mxint8.grid()[0].item() == -127 / 64
    with pytest.raises(ConfigError, match="block_size"):
        mx_format(get_format("fp4_e2m1"), block_size=0)


def test_every_entry_is_a_format():
    for name, fmt in FORMATS.items():
        assert isinstance(fmt, (IntFormat, FloatFormat, BlockFormat)) and fmt.name == name
        assert math.isfinite(fmt.max)
