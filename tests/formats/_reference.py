"""Independent references for the format tests (no quantlens rounding code is used here).

* `exact_round`: pure Python with Fractions, one value at a time (slow, unimpeachable).
* `grid_round`: numpy float64 nearest-neighbour search on the enumerated grid (fast, 10^6 values).
* `float32_inputs`: a deterministic float32 test vector with ties, boundaries, subnormals, overflow,
  NaN and +-Inf for one format.
* `same_bits`: bitwise float32 equality where any NaN equals any NaN.

Rounding rule both references implement: nearest grid value; a tie goes to the neighbour whose
value is an even multiple of the lower neighbour's spacing (IEEE ties-to-even for man_bits >= 1;
for man_bits == 0 the significand 1 is odd, so ties go up, as ml_dtypes and torch do for E8M0).
Overflow (saturate=False): as if the exponent range were unbounded; a result beyond max becomes
Inf (IEEE formats), NaN ("fn" formats), or max (formats with neither).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from fractions import Fraction

import ml_dtypes
import numpy as np
import torch

from quantlens.formats import FloatFormat

# registry name -> numpy dtype that represents the same format (ml_dtypes, or numpy's float16)
ML_DTYPES = {
    "fp8_e4m3": ml_dtypes.float8_e4m3fn,
    "fp8_e5m2": ml_dtypes.float8_e5m2,
    "fp6_e3m2": ml_dtypes.float6_e3m2fn,
    "fp6_e2m3": ml_dtypes.float6_e2m3fn,
    "fp4_e2m1": ml_dtypes.float4_e2m1fn,
    "e8m0": ml_dtypes.float8_e8m0fnu,
    "fp16": np.float16,
    "bf16": ml_dtypes.bfloat16,
}
# registry name -> torch dtype with casts from float32
TORCH_DTYPES = {
    "fp8_e4m3": torch.float8_e4m3fn,
    "fp8_e5m2": torch.float8_e5m2,
    "e8m0": torch.float8_e8m0fnu,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
# E8M0 inputs in (2^-127, 2^-126) are float32 subnormals that ml_dtypes and torch round *up* to
# 2^-126 (they take the guard bit at 2^-127 as the midpoint); the nearest value is 2^-127 below
# 1.5 * 2^-127. quantlens rounds to nearest; those inputs are checked against `exact_round`.
E8M0_QUIRK = (2.0**-127, 2.0**-126)


def same_bits(a, b) -> np.ndarray:
    """Elementwise: identical float32 bits, or both NaN."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    return (a.view(np.int32) == b.view(np.int32)) | (np.isnan(a) & np.isnan(b))


def _positive_grid(fmt: FloatFormat) -> list[Fraction]:
    """Positive finite values of the format (plus 0 when it has one), ascending, from its fields."""
    values = set()
    for field in range(1 << fmt.exp_bits):
        for mant in range(1 << fmt.man_bits):
            top = field == (1 << fmt.exp_bits) - 1
            if top and fmt.specials.value == "ieee":
                continue
            if top and fmt.specials.value == "fn" and mant == (1 << fmt.man_bits) - 1:
                continue
            if field == 0 and fmt.has_zero:
                values.add(Fraction(mant) * Fraction(2) ** (1 - fmt.bias - fmt.man_bits))
            else:
                values.add((1 + Fraction(mant, 1 << fmt.man_bits)) * Fraction(2) ** (field - fmt.bias))
    return sorted(values)


def top_spacing(fmt: FloatFormat) -> Fraction:
    """Grid spacing in max's binade: 2^(floor(log2 max) - man_bits) (E4M3: 32, E8M0: 2^127)."""
    _, e = math.frexp(float(_grid(fmt)[-1]))
    return Fraction(2) ** (e - 1 - fmt.man_bits)


_GRIDS: dict[FloatFormat, list[Fraction]] = {}


def _grid(fmt):
    if fmt not in _GRIDS:
        _GRIDS[fmt] = _positive_grid(fmt)
    return _GRIDS[fmt]


def _spacing_parity_pick(a: Fraction, b: Fraction) -> Fraction:
    """Tie between grid neighbours a < b: a if a is an even multiple of (b - a), else b."""
    k = a / (b - a)
    assert k.denominator == 1
    return a if k.numerator % 2 == 0 else b


def exact_round(x: float, fmt: FloatFormat, saturate: bool = True) -> float:
    """The correctly rounded value of float x in fmt, as a Python float (exact rational maths)."""
    if math.isnan(x):
        return math.nan
    grid = _grid(fmt)
    gmax = grid[-1]
    over = math.inf if fmt.has_inf else (math.nan if fmt.has_nan else float(gmax))
    if not fmt.signed and (x < 0 or (x == 0 and not fmt.has_zero)):
        if fmt.has_zero:
            return 0.0
        return float(grid[0]) if saturate else math.nan
    sign = -1.0 if math.copysign(1.0, x) < 0 and fmt.signed else 1.0  # unsigned: -0 -> +0
    if math.isinf(x):
        return sign * (float(gmax) if saturate else over)
    a = Fraction(abs(x))
    if a > gmax:
        if saturate:
            return sign * float(gmax)
        # unbounded exponent range: the next value above max is max + spacing(max)
        nxt = gmax + top_spacing(fmt)
        if a < (gmax + nxt) / 2 or (a == (gmax + nxt) / 2 and _spacing_parity_pick(gmax, nxt) == gmax):
            return sign * float(gmax)
        return sign * over
    i = bisect_left(grid, a)
    if grid[i] == a:
        return sign * float(a)
    if i == 0:  # below the smallest value of a format without zero
        return sign * float(grid[0])
    lo, hi = grid[i - 1], grid[i]
    mid = (lo + hi) / 2
    pick = lo if a < mid else hi if a > mid else _spacing_parity_pick(lo, hi)
    return sign * float(pick)


def grid_round(x: np.ndarray, fmt: FloatFormat, saturate: bool = True) -> np.ndarray:
    """Vectorised `exact_round` for float32 arrays (float64 arithmetic is exact here: grid
    values, their midpoints and float32 inputs are all float64 numbers)."""
    grid = np.array([float(g) for g in _grid(fmt)], dtype=np.float64)
    gmax = grid[-1]
    ext = np.append(grid, gmax + float(top_spacing(fmt)))  # what an unbounded exponent range adds
    # parity of each value relative to the spacing to its upper neighbour
    k = ext[:-1] / np.diff(ext)
    even = (np.rint(k) % 2) == 0
    with np.errstate(invalid="ignore"):
        x64 = np.asarray(x, dtype=np.float32).astype(np.float64)
    a = np.abs(x64)
    a_c = np.minimum(np.where(np.isfinite(a), a, gmax), ext[-1])
    i = np.clip(np.searchsorted(ext, a_c, side="left"), 1, len(ext) - 1)
    lo, hi = ext[i - 1], ext[i]
    mid = (lo + hi) / 2
    pick_lo = (a_c < mid) | ((a_c == mid) & even[i - 1])
    r = np.where(pick_lo, lo, hi)
    r = np.where(a_c == hi, hi, r)
    r = np.where(a_c < ext[0], ext[0], r)  # formats without zero: below the minimum
    over = np.inf if fmt.has_inf else (np.nan if fmt.has_nan else gmax)
    overflow = (r > gmax) | np.isinf(a)
    r = np.where(overflow, gmax if saturate else over, r)
    sign = np.signbit(x64)
    out = np.where(sign, -r, r)
    if not fmt.signed:
        below = sign & ~((x64 == 0) & fmt.has_zero)
        below_value = 0.0 if fmt.has_zero else (grid[0] if saturate else np.nan)
        out = np.where(below, below_value, np.abs(out))
        if not fmt.has_zero:
            out = np.where(x64 == 0, grid[0] if saturate else np.nan, out)
    out = np.where(np.isnan(x64), np.nan, out)
    return out.astype(np.float32)


def float32_inputs(fmt: FloatFormat, n_random: int = 1_000_000, seed: int = 0) -> np.ndarray:
    """float32 inputs for one format: every grid value (both signs), every midpoint (exact
    ties) and its float32 neighbours, boundaries (+-max, overflow thresholds, min normal and
    subnormal, float32 subnormals), NaN, +-Inf, +-0, random bit patterns and random values
    log-uniform over (and around) the format's range. About n_random + a few thousand values."""
    rng = np.random.default_rng(seed)
    grid = np.array([float(g) for g in _grid(fmt)], dtype=np.float64)
    ext = np.append(grid, grid[-1] + float(top_spacing(fmt)))
    mids = ((ext[:-1] + ext[1:]) / 2).astype(np.float32)
    assert np.all(mids.astype(np.float64) == (ext[:-1] + ext[1:]) / 2), "midpoints must be exact float32"
    g32 = grid.astype(np.float32)
    pieces = [
        g32, mids,
        np.nextafter(mids, np.float32(np.inf)), np.nextafter(mids, np.float32(-np.inf)),
        np.nextafter(g32, np.float32(np.inf)), np.nextafter(g32, np.float32(-np.inf)),
        np.array([np.nan, np.inf, -np.inf, 0.0, np.finfo(np.float32).max, np.finfo(np.float32).tiny,
                  1e-45, 2.0**-127, 2.0**-126, 1.5 * 2.0**-127, 3.0e38], dtype=np.float32),
    ]
    # random float32 bit patterns: every exponent, NaN payloads, subnormals
    pieces.append(rng.integers(0, 2**32, size=n_random // 4, dtype=np.uint64).astype(np.uint32).view(np.float32))
    # log-uniform magnitudes from below the smallest subnormal to above the overflow threshold
    lo_exp = math.log2(float(grid[grid > 0][0])) - 4
    hi_exp = math.log2(float(ext[-1])) + 2
    mags = np.exp2(rng.uniform(lo_exp, min(hi_exp, 127.9), size=n_random - n_random // 4)).astype(np.float32)
    pieces.append(mags)
    special = np.concatenate([p.astype(np.float32) for p in pieces[:7]])
    random = np.concatenate([p.astype(np.float32) for p in pieces[7:]])
    random_signs = rng.random(random.size) < 0.5
    random = np.where(random_signs, -random, random)  # np.negative flips the sign bit, NaN included
    return np.concatenate([special, -special, random]).astype(np.float32)
