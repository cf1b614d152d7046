"""Bit-exact rounding of every registered minifloat against ml_dtypes, torch and exact references.

Tests are generated from the format table: each minifloat with an ml_dtypes (or numpy) twin is
compared on ~1.1M float32 inputs (every grid value, every exact tie and its float32 neighbours,
boundaries, subnormals, overflow, NaN, +-Inf, random bit patterns, random magnitudes), in both
the saturating and the overflow mode, on the default path (fused for tensors this large) and the
eager fallback. Formats without a library twin are checked against the exact references only.

What the libraries do (pinned down in test_format_library_behaviour.py):
- saturating mode == ml_dtypes(clip(x, lowest, max)) for every format;
- overflow mode == ml_dtypes(x) itself: E5M2/fp16/bf16 -> Inf, E4M3fn/E8M0 -> NaN, FP6/FP4
  saturate (no Inf/NaN to go to), except that ml_dtypes turns NaN into a signed zero for FP6/FP4
  (we keep NaN) and rounds E8M0 inputs in (2^-127, 2^-126) up (we round them to nearest).
"""

from __future__ import annotations

import functools

import ml_dtypes
import numpy as np
import pytest
import torch

from quantlens.formats import FORMATS, FloatFormat, float_format, get_format, round_to_grid

from ._reference import E8M0_QUIRK, ML_DTYPES, TORCH_DTYPES, exact_round, float32_inputs, grid_round, same_bits

FLOAT_NAMES = [name for name, fmt in FORMATS.items() if isinstance(fmt, FloatFormat)]
WITH_LIBRARY_TWIN = [name for name in FLOAT_NAMES if name in ML_DTYPES]
WITH_TORCH_DTYPE = [name for name in FLOAT_NAMES if name in TORCH_DTYPES]
# registered minifloats that no library implements: checked against the exact references only
NO_LIBRARY_TWIN = {"fp4_e3m0", "fp8_e3m4"}  # fp8_e3m4: E4M3fn-style NaN; ml_dtypes' e3m4 is IEEE-like

# generic factory outputs, twinned with ml_dtypes types that share their semantics
EXTRA_TWINS = {
    "e4m3_ieee": (float_format(4, 3), ml_dtypes.float8_e4m3),  # IEEE-like E4M3: max 240, Inf
    "e3m4_ieee": (float_format(3, 4), ml_dtypes.float8_e3m4),  # max 15.5, Inf
}
# more generic formats for the exact references: other biases, unsigned, no mantissa, wide exponent
EXTRA_FORMATS = {
    "e4m3_bias11_fn": float_format(4, 3, bias=11, specials="fn"),
    "e5m0_finite": float_format(5, 0, specials="finite"),
    "e4m3_unsigned_finite": float_format(4, 3, signed=False, specials="finite"),
    "e3m3_unsigned_nozero_fn": float_format(3, 3, signed=False, has_zero=False, specials="fn"),
    "e1m2_finite": float_format(1, 2, specials="finite"),
    "e8m3": float_format(8, 3),  # emin -126: its subnormals are float32 subnormals
}


@functools.cache
def _vector(fmt: FloatFormat) -> np.ndarray:
    return float32_inputs(fmt, n_random=1_000_000, seed=7)


def _ours(x: np.ndarray, fmt, saturate: bool, path: str) -> np.ndarray:
    return round_to_grid(torch.from_numpy(x), fmt, saturate=saturate, path=path).numpy()


def _assert_same(ours, expected, x, mask=None, what=""):
    ok = same_bits(ours, expected)
    if mask is not None:
        ok |= ~mask
    if not ok.all():
        bad = np.nonzero(~ok)[0][:5]
        pytest.fail(f"{what}: {int((~ok).sum())} mismatches, e.g. x={x[bad].tolist()} "
                    f"ours={ours[bad].tolist()} expected={expected[bad].tolist()}")


def test_every_registered_minifloat_has_a_reference():
    assert set(FLOAT_NAMES) == set(WITH_LIBRARY_TWIN) | NO_LIBRARY_TWIN
    assert len(_vector(get_format("fp8_e4m3"))) >= 1_000_000


def _twin(name):
    if name in EXTRA_TWINS:
        return EXTRA_TWINS[name]
    return get_format(name), ML_DTYPES[name]


def _compared(fmt, x):
    """Inputs where the library's answer is the specified one (see the module docstring)."""
    mask = np.ones(x.shape, dtype=bool)
    if fmt.specials.value == "finite":
        mask &= ~np.isnan(x)  # ml_dtypes: NaN -> signed zero
    if fmt.name == "e8m0":
        mask &= ~((np.abs(x) > E8M0_QUIRK[0]) & (np.abs(x) < E8M0_QUIRK[1]))
    return mask


@pytest.mark.parametrize("path", ["auto", "eager"])
@pytest.mark.parametrize("name", WITH_LIBRARY_TWIN + list(EXTRA_TWINS))
def test_saturating_mode_equals_ml_dtypes_after_clipping(name, path):
    fmt, dtype = _twin(name)
    x = _vector(fmt)
    with np.errstate(invalid="ignore", over="ignore"):
        expected = np.clip(x, fmt.lowest, fmt.max).astype(dtype).astype(np.float32)
    ours = _ours(x, fmt, True, path)
    _assert_same(ours, expected, x, _compared(fmt, x), f"{name} saturating")
    assert np.isnan(ours[np.isnan(x)]).all(), "NaN must propagate"


@pytest.mark.parametrize("path", ["auto", "eager"])
@pytest.mark.parametrize("name", WITH_LIBRARY_TWIN + list(EXTRA_TWINS))
def test_overflow_mode_equals_ml_dtypes(name, path):
    fmt, dtype = _twin(name)
    x = _vector(fmt)
    with np.errstate(invalid="ignore", over="ignore"):
        expected = x.astype(dtype).astype(np.float32)
    ours = _ours(x, fmt, False, path)
    _assert_same(ours, expected, x, _compared(fmt, x), f"{name} overflow mode")


@pytest.mark.parametrize("saturate", [True, False])
@pytest.mark.parametrize("name", FLOAT_NAMES + list(EXTRA_TWINS) + list(EXTRA_FORMATS))
def test_equals_grid_reference(name, saturate):
    fmt = EXTRA_FORMATS[name] if name in EXTRA_FORMATS else _twin(name)[0] if name in EXTRA_TWINS else get_format(name)
    x = _vector(fmt)
    _assert_same(_ours(x, fmt, saturate, "auto"), grid_round(x, fmt, saturate), x, None, f"{name} grid reference")


@pytest.mark.parametrize("name", FLOAT_NAMES + list(EXTRA_FORMATS))
def test_equals_exact_rational_reference_on_a_subsample(name):
    fmt = EXTRA_FORMATS.get(name) or get_format(name)
    x = _vector(fmt)
    rng = np.random.default_rng(1)
    n_special = (x.size - 1_000_000)  # the grid/tie/boundary part comes first
    pick = np.concatenate([rng.choice(n_special, size=min(n_special, 1500), replace=False),
                           n_special + rng.choice(1_000_000, size=1500, replace=False)])
    sub = x[pick]
    for saturate in (True, False):
        expected = np.array([exact_round(float(v), fmt, saturate) for v in sub], dtype=np.float32)
        _assert_same(_ours(sub, fmt, saturate, "eager"), expected, sub, None, f"{name} exact, saturate={saturate}")


@pytest.mark.parametrize("name", WITH_TORCH_DTYPE)
def test_equals_torch_casts(name):
    """torch: E4M3fn casts saturate (even Inf -> 448); E5M2, fp16, bf16 overflow to Inf; E8M0
    maps 0 to 2^-127 and drops the sign of negatives, so it is compared on positive in-range values."""
    fmt = get_format(name)
    x = _vector(fmt)
    expected = torch.from_numpy(x).to(TORCH_DTYPES[name]).float().numpy()
    if name == "fp8_e4m3":
        _assert_same(_ours(x, fmt, True, "auto"), expected, x, None, "torch e4m3fn cast")
    elif name == "e8m0":
        mask = (x > 0) & (x <= fmt.max) & _compared(fmt, x)
        _assert_same(_ours(x, fmt, True, "auto"), expected, x, mask, "torch e8m0fnu cast")
    else:
        _assert_same(_ours(x, fmt, False, "auto"), expected, x, None, f"torch {TORCH_DTYPES[name]} cast")


def test_e8m0_quirk_region_rounds_to_nearest():
    # 1.25 * 2^-127 is nearer 2^-127; ml_dtypes and torch give 2^-126 (see _reference.E8M0_QUIRK)
    x = torch.tensor([1.25 * 2.0**-127, 1.5 * 2.0**-127, 1.75 * 2.0**-127])
    assert round_to_grid(x, "e8m0").tolist() == [2.0**-127, 2.0**-126, 2.0**-126]
    assert np.array([1.25 * 2.0**-127], np.float32).astype(ml_dtypes.float8_e8m0fnu).astype(np.float32)[0] == 2.0**-126
