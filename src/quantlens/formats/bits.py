"""Bit patterns of formats: decode every code, encode grid values, enumerate the grid.

Codes are non-negative integers below 2^bits, held in int64 tensors. Float codes are laid out
[sign][exponent][mantissa] (no sign bit for unsigned formats); integer codes are two's complement
(signed) or plain binary (unsigned). Decoding is exact: values are built in float64 and every
grid value is an exact float32.
"""

from __future__ import annotations

import torch

from quantlens.formats.types import BlockFormat, FloatFormat, IntFormat, NumberFormat, Specials

MAX_ENUMERATED_BITS = 20  # grid() / all_codes() refuse wider formats (2^20 codes is ~1M values)


def _element(fmt: NumberFormat) -> IntFormat | FloatFormat:
    return fmt.element if isinstance(fmt, BlockFormat) else fmt


def all_codes(fmt: NumberFormat) -> torch.Tensor:
    """Every bit pattern 0 .. 2^bits - 1 of the (element) format, int64."""
    elem = _element(fmt)
    if elem.bits > MAX_ENUMERATED_BITS:
        raise ValueError(f"{elem.name} has {elem.bits} bits; enumerating more than "
                         f"2^{MAX_ENUMERATED_BITS} codes is refused")
    return torch.arange(1 << elem.bits, dtype=torch.int64)


def _check_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    if codes.is_floating_point() or codes.is_complex():
        raise ValueError(f"codes must be an integer tensor, got {codes.dtype}")
    c = codes.to(torch.int64)
    if c.numel() and (int(c.min()) < 0 or int(c.max()) >= (1 << bits)):
        raise ValueError(f"codes must lie in [0, 2^{bits}) for a {bits}-bit format")
    return c


def decode(codes: torch.Tensor, fmt: NumberFormat) -> torch.Tensor:
    """Values (float32) of bit patterns. Block formats decode their element codes (element units,
    before the block scale; MXINT8 code k -> k * 2^-6)."""
    elem = _element(fmt)
    c = _check_codes(codes, elem.bits)
    if isinstance(elem, IntFormat):
        q = c - (1 << elem.bits) * (c >= (1 << (elem.bits - 1))) if elem.signed else c
        step_log2 = fmt.element_step_log2 if isinstance(fmt, BlockFormat) else 0
        return torch.ldexp(q.to(torch.float64), torch.tensor(step_log2)).to(torch.float32)
    return _decode_float(c, elem)


def _decode_float(c: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    m, top = fmt.man_bits, (1 << fmt.exp_bits) - 1
    mant = c & ((1 << m) - 1)
    field = (c >> m) & top
    if fmt.has_zero:  # field 0: zero and subnormals 0.m * 2^emin
        significand = torch.where(field == 0, mant, mant + (1 << m))
        exponent = torch.where(field == 0, fmt.emin, field - fmt.bias) - m
    else:  # field 0 is an ordinary binade (E8M0)
        significand, exponent = mant + (1 << m), field - fmt.bias - m
    value = torch.ldexp(significand.to(torch.float64), exponent)
    if fmt.specials is Specials.IEEE:
        value = torch.where(field == top, torch.where(mant == 0, torch.inf, torch.nan), value)
    elif fmt.specials is Specials.FINITE_NAN:
        value = torch.where((field == top) & (mant == (1 << m) - 1), torch.nan, value)
    if fmt.signed:
        value = torch.where(((c >> (fmt.exp_bits + m)) & 1) == 1, -value, value)
    return value.to(torch.float32)


def nan_code(fmt: FloatFormat) -> int:
    """The code `encode` gives NaN: quiet NaN for IEEE formats, the all-ones pattern for "fn"."""
    m, top = fmt.man_bits, (1 << fmt.exp_bits) - 1
    if not fmt.has_nan:
        raise ValueError(f"{fmt.name} has no NaN encoding")
    if fmt.specials is Specials.IEEE:
        return (top << m) | (1 << (m - 1))
    return (top << m) | ((1 << m) - 1)


def encode(values: torch.Tensor, fmt: NumberFormat) -> torch.Tensor:
    """Bit patterns (int64) of values that lie exactly on the (element) grid; NaN and Inf map to
    the format's own patterns. Anything else raises ValueError naming the first bad value.
    Round first (`round_to_grid`) to encode arbitrary values."""
    elem = _element(fmt)
    if not values.is_floating_point():
        raise ValueError(f"values must be a floating tensor, got {values.dtype}")
    v = values.detach().to(torch.float64).cpu()
    if isinstance(elem, IntFormat):
        step_log2 = fmt.element_step_log2 if isinstance(fmt, BlockFormat) else 0
        q = torch.ldexp(v, torch.tensor(-step_log2))
        ok = (q == torch.round(q)) & (q >= elem.qmin) & (q <= elem.qmax)
        _refuse_off_grid(values, ok, elem)
        return q.to(torch.int64) & ((1 << elem.bits) - 1)
    codes = _encode_float(v, elem)
    ok = (decode(codes, elem).to(torch.float64) == v) | (torch.isnan(v) & elem.has_nan)
    if not elem.signed:
        ok &= ~torch.signbit(v) | (v == 0)
    _refuse_off_grid(values, ok, elem)
    return codes.to(values.device)


def _refuse_off_grid(values: torch.Tensor, ok: torch.Tensor, elem) -> None:
    if not bool(ok.all()):
        bad = values.detach().reshape(-1)[~ok.reshape(-1).to(values.device)][0].item()
        raise ValueError(f"{bad!r} is not a value of {elem.name}; round it onto the grid first")


def _encode_float(v: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    # v: float64. Off-grid values produce some code; `encode` then refuses them.
    m, top = fmt.man_bits, (1 << fmt.exp_bits) - 1
    a = v.abs()
    finite = torch.isfinite(a)
    safe = torch.where(finite & (a > 0), a, torch.ones_like(a))
    _, ex = torch.frexp(safe)  # safe = f * 2^ex with f in [0.5, 1): binade ex - 1
    binade = ex.to(torch.int64) - 1
    normal = binade >= fmt.emin if fmt.has_zero else torch.ones_like(binade, dtype=torch.bool)
    field = torch.where(normal, binade + fmt.bias, 0)
    step_exp = torch.where(normal, binade, fmt.emin) - m
    significand = torch.ldexp(safe, -step_exp).round().to(torch.int64)
    mant = torch.where(normal, significand - (1 << m), significand)
    code = (field.clamp(0, top) << m) | mant.clamp(0, (1 << m) - 1)
    code = torch.where(a == 0, 0, code)
    if fmt.specials is Specials.IEEE:
        code = torch.where(torch.isinf(a), top << m, code)
    if fmt.has_nan:
        code = torch.where(torch.isnan(a), nan_code(fmt), code)
    if fmt.signed:
        code = code | (torch.signbit(v).to(torch.int64) << (fmt.exp_bits + m))
    return code


def grid(fmt: NumberFormat) -> torch.Tensor:
    """Every finite value of the (element) format, float32, ascending, zero once (+0)."""
    elem = _element(fmt)
    if isinstance(elem, IntFormat):
        step_log2 = fmt.element_step_log2 if isinstance(fmt, BlockFormat) else 0
        q = torch.arange(elem.qmin, elem.qmax + 1, dtype=torch.float64)
        return torch.ldexp(q, torch.tensor(step_log2)).to(torch.float32)
    values = decode(all_codes(elem), elem)
    values = values[torch.isfinite(values)]
    values = torch.where(values == 0, torch.zeros_like(values), values)  # -0 -> +0
    return torch.unique(values)  # sorted
