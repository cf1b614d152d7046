"""Bit patterns: decode every encoding like ml_dtypes/torch do, encode back, re-quantize unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from quantlens.formats import (
    FORMATS,
    FloatFormat,
    IntFormat,
    all_codes,
    decode,
    encode,
    get_format,
    nan_code,
    round_to_grid,
)

from ._reference import ML_DTYPES, TORCH_DTYPES, same_bits

FLOAT_NAMES = [n for n, f in FORMATS.items() if isinstance(f, FloatFormat)]
INT_NAMES = [n for n, f in FORMATS.items() if isinstance(f, IntFormat)]


def _library_decode(name: str, codes: np.ndarray) -> np.ndarray:
    dtype = ML_DTYPES[name]
    width = np.uint16 if np.dtype(dtype).itemsize == 2 else np.uint8
    return codes.astype(width).view(dtype).astype(np.float32)


@pytest.mark.parametrize("name", [n for n in FLOAT_NAMES if n in ML_DTYPES])
def test_decode_every_code_like_ml_dtypes(name):
    fmt = get_format(name)
    codes = all_codes(fmt)
    assert len(codes) == 2**fmt.bits
    assert same_bits(decode(codes, fmt).numpy(), _library_decode(name, codes.numpy())).all()


@pytest.mark.parametrize("name", [n for n in FLOAT_NAMES if n in TORCH_DTYPES])
def test_decode_every_code_like_torch(name):
    fmt = get_format(name)
    codes = all_codes(fmt)
    width = torch.int16 if fmt.bits == 16 else torch.uint8
    as_torch = codes.to(torch.int32).to(width).view(TORCH_DTYPES[name]).float()
    assert same_bits(decode(codes, fmt).numpy(), as_torch.numpy()).all()


@pytest.mark.parametrize("saturate", [True, False])
@pytest.mark.parametrize("name", FLOAT_NAMES)
def test_every_encoding_requantizes_to_itself(name, saturate):
    fmt = get_format(name)
    values = decode(all_codes(fmt), fmt)
    expected = values.clone()
    if saturate:  # Inf saturates to +-max; everything else is already on the grid
        expected[torch.isinf(values)] = torch.sign(values[torch.isinf(values)]) * fmt.max
    for path in ("eager", "compiled"):
        again = round_to_grid(values, fmt, saturate=saturate, path=path)
        assert same_bits(again.numpy(), expected.numpy()).all(), path


@pytest.mark.parametrize("name", FLOAT_NAMES)
def test_encode_inverts_decode(name):
    fmt = get_format(name)
    codes = all_codes(fmt)
    values = decode(codes, fmt)
    back = encode(values, fmt)
    is_nan = torch.isnan(values)
    assert torch.equal(back[~is_nan], codes[~is_nan])
    if fmt.has_nan:
        sign = 1 << (fmt.bits - 1) if fmt.signed else 0
        assert set(back[is_nan].tolist()) <= {nan_code(fmt), nan_code(fmt) | sign}


def test_nan_and_inf_codes():
    e4m3, e5m2, e8m0 = get_format("fp8_e4m3"), get_format("fp8_e5m2"), get_format("e8m0")
    assert (nan_code(e4m3), nan_code(e5m2), nan_code(e8m0)) == (0x7F, 0x7E, 0xFF)
    assert encode(torch.tensor([math.inf, -math.inf]), e5m2).tolist() == [0x7C, 0xFC]
    assert encode(torch.tensor([448.0, -448.0, -0.0, 2.0**-9]), e4m3).tolist() == [0x7E, 0xFE, 0x80, 0x01]
    assert encode(torch.tensor([1.0, 2.0**-127, 2.0**127]), e8m0).tolist() == [127, 0, 254]


@pytest.mark.parametrize("value, name", [
    (0.3, "fp8_e4m3"), (math.inf, "fp8_e4m3"), (math.nan, "fp4_e2m1"), (500.0, "fp8_e4m3"),
    (0.0, "e8m0"), (-1.0, "e8m0"), (3.0, "e8m0"), (128.0, "int8"), (0.5, "int8"),
])
def test_encode_refuses_values_off_the_grid(value, name):
    with pytest.raises(ValueError, match="not a value of"):
        encode(torch.tensor([value]), get_format(name))


@pytest.mark.parametrize("name", INT_NAMES)
def test_integer_codes(name):
    fmt = get_format(name)
    grid = fmt.grid()
    codes = encode(grid, fmt)
    assert torch.equal(decode(codes, fmt), grid)
    if fmt.signed:  # two's complement
        assert encode(torch.tensor([-1.0]), fmt).item() == 2**fmt.bits - 1


def test_block_element_codes():
    mxint8 = get_format("mxint8")
    assert decode(torch.tensor([1, 127, 129]), mxint8).tolist() == [1 / 64, 127 / 64, -127 / 64]
    assert encode(torch.tensor([-127 / 64]), mxint8).item() == 129
    assert torch.equal(get_format("mxfp4").grid(), get_format("fp4_e2m1").grid())


def test_decode_checks_codes():
    with pytest.raises(ValueError, match=r"\[0, 2\^8\)"):
        decode(torch.tensor([256]), get_format("fp8_e4m3"))
    with pytest.raises(ValueError, match="integer tensor"):
        decode(torch.tensor([1.0]), get_format("fp8_e4m3"))
