"""What ml_dtypes 0.6 and torch 2.13 do at the edges: the facts the exactness tests rely on.

If a library upgrade changes one of these, this file says which fact moved.

ml_dtypes (casts from float32):
- round once, to nearest even, straight from float32 (no double rounding through float16);
- casts from float64 go through float32 first, so they can double-round (quantlens also works in
  float32: float64 inputs are cast to float32 first, with the same effect);
- overflow: float8_e4m3fn -> NaN (from 464 < x, since 464 is the tie that rounds to 448), Inf ->
  NaN; float8_e5m2 -> +-Inf (from 61440, the tie above 57344); float6_e3m2fn, float6_e2m3fn,
  float4_e2m1fn saturate to +-max (Inf too) and turn NaN into a signed zero;
  float8_e8m0fnu: >= 1.5 * 2^127, Inf, NaN, 0 and negatives -> NaN (0xFF), tiny positives -> 2^-127,
  ties between powers of two go up, float32 subnormals in (2^-127, 2^-126) round up to 2^-126.
torch (casts from float32):
- float8_e4m3fn saturates: 500 -> 448, Inf -> 448, NaN -> NaN;
- float8_e5m2 is IEEE: 61440 -> Inf;
- float8_e8m0fnu: 0 -> 2^-127, negatives lose their sign (-3 -> 4), Inf/NaN/overflow -> 0xFF;
- fake_quantize_per_tensor_affine divides by multiplying with the float32 reciprocal, rounds
  ties to even, and maps NaN to qmin * scale (quantlens keeps NaN).
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import torch

F32 = np.float32


def _ml(values, dtype, source=np.float32):
    with np.errstate(invalid="ignore", over="ignore"):
        return np.asarray(values, dtype=source).astype(dtype).astype(np.float64).tolist()


def test_ml_dtypes_rounds_float32_once():
    # 1.0625 + 2^-20 lies above the E4M3 tie 1.0625 (between 1 and 1.125); a float16 intermediate
    # would round it onto the tie and then to even (1.0)
    assert _ml([1.0625 + 2.0**-20], ml_dtypes.float8_e4m3fn) == [1.125]
    assert _ml([1.125 + 2.0**-20], ml_dtypes.float8_e5m2) == [1.25]
    assert torch.tensor([1.0625 + 2.0**-20]).to(torch.float8_e4m3fn).float().tolist() == [1.125]


def test_ml_dtypes_double_rounds_from_float64():
    x = 1.0625 + 2.0**-40  # above the tie; float32 cannot hold it and rounds onto the tie
    assert _ml([x], ml_dtypes.float8_e4m3fn, source=np.float64) == [1.0]
    assert _ml([x], ml_dtypes.float8_e4m3fn, source=np.float32) == [1.0]  # the float32 value is the tie


def test_ml_dtypes_overflow_behaviour():
    e4m3 = _ml([448, 460, 464, 465, 480, 1e6, math.inf, -1e6], ml_dtypes.float8_e4m3fn)
    assert e4m3[:3] == [448, 448, 448] and all(math.isnan(v) for v in e4m3[3:])
    e5m2 = _ml([57344, 61439, 61440, 1e6, -1e6, math.inf], ml_dtypes.float8_e5m2)
    assert e5m2 == [57344, 57344, math.inf, math.inf, -math.inf, math.inf]
    for dtype, top in ((ml_dtypes.float6_e3m2fn, 28), (ml_dtypes.float6_e2m3fn, 7.5), (ml_dtypes.float4_e2m1fn, 6)):
        assert _ml([1e6, -1e6, math.inf, -math.inf], dtype) == [top, -top, top, -top]
        nan_code = np.array([math.nan], F32).astype(dtype)
        assert nan_code.astype(np.float64)[0] == 0.0  # NaN becomes a (signed) zero
    e8m0 = _ml([1.4 * 2.0**127, 1.5 * 2.0**127, math.inf, math.nan, 0.0, -0.0, -3.0, 1e-45], ml_dtypes.float8_e8m0fnu)
    assert e8m0[0] == 2.0**127 and all(math.isnan(v) for v in e8m0[1:7]) and e8m0[7] == 2.0**-127


def test_e8m0_ties_go_up_and_the_subnormal_quirk():
    ties = [1.5 * 2.0**k for k in (-100, -1, 0, 1, 2, 3, 100)]
    assert _ml(ties, ml_dtypes.float8_e8m0fnu) == [2.0 * 2.0**k for k in (-100, -1, 0, 1, 2, 3, 100)]
    assert torch.tensor(ties).to(torch.float8_e8m0fnu).double().tolist() == [2.0 * t / 1.5 for t in ties]
    quirk = [1.25 * 2.0**-127]  # nearer 2^-127, both libraries give 2^-126
    assert _ml(quirk, ml_dtypes.float8_e8m0fnu) == [2.0**-126]
    assert torch.tensor(quirk).to(torch.float8_e8m0fnu).double().tolist() == [2.0**-126]


def test_torch_float8_casts():
    x = torch.tensor([500.0, math.inf, -math.inf, math.nan, 464.0, 470.0])
    e4m3 = x.to(torch.float8_e4m3fn).float().tolist()
    assert e4m3[:3] == [448, 448, -448] and math.isnan(e4m3[3]) and e4m3[4:] == [448, 448]
    assert torch.tensor([61439.0, 61440.0]).to(torch.float8_e5m2).float().tolist() == [57344, math.inf]
    e8m0 = torch.tensor([0.0, -3.0, math.inf, 1.5 * 2.0**127]).to(torch.float8_e8m0fnu)
    assert e8m0.view(torch.uint8).tolist() == [0, 129, 255, 255]


def test_torch_fake_quantize_uses_the_reciprocal_and_drops_nan():
    # x / 0.1 in float32 is exactly the tie -632.5 (-> -632), x * (1 / 0.1) is -633.00003 (-> -633)
    x = float(F32(-63.250004))
    assert np.rint(F32(x) / F32(0.1)) == -632 and np.rint(F32(x) * (F32(1) / F32(0.1))) == -633
    out = torch.fake_quantize_per_tensor_affine(torch.tensor([x, math.nan]), 0.1, 0, -1000, 1000)
    assert out[0].item() == float(F32(-633) * F32(0.1))
    assert out[1].item() == float(F32(-1000) * F32(0.1))  # NaN -> qmin
    ties = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5])
    assert torch.fake_quantize_per_tensor_affine(ties, 1.0, 0, -10, 10).tolist() == [0, 2, 2, -0.0, -2]
