"""Entropy observer: the vectorised KL search against a plain loop, known optima, post-ReLU data."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from quantlens.formats import get_format
from quantlens.observers import EntropyObserver
from quantlens.observers.entropy import integer_levels
from quantlens.observers.kl import entropy_stop_bin


def _loop_reference(hist: np.ndarray, levels: int) -> int:
    """TensorRT's search written plainly: one candidate at a time, one level at a time."""
    best, best_kl, total = None, math.inf, hist.sum()
    for i in range(levels, len(hist) + 1):
        p = hist[:i].astype(np.float64).copy()
        p[i - 1] += hist[i:].sum()
        q = np.zeros(i)
        for level in range(levels):
            members = [j for j in range(i) if (j * levels) // i == level]
            nonzero = [j for j in members if p[j] > 0]
            for j in nonzero:
                q[j] = hist[members].sum() / len(nonzero)
        p, q = p / total, q / q.sum()
        with np.errstate(divide="ignore"):
            kl = float(np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / np.where(q > 0, q, 1e-300)), 0)))
        if kl < best_kl:
            best, best_kl = i, kl
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_search_matches_a_plain_loop(seed):
    rng = np.random.default_rng(seed)
    hist = np.histogram(np.abs(rng.standard_t(3, 20_000)), bins=160)[0].astype(np.float64)
    hist[rng.integers(0, 160, 20)] = 0  # empty bins: zeros must stay zero in Q
    assert entropy_stop_bin(torch.from_numpy(hist), get_format("int4"), 16) == _loop_reference(hist, 16)


def test_bulk_with_rare_outliers_is_clipped_at_the_bulk():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(400_000, generator=g) * 2 - 1  # uniform [-1, 1]: nothing to gain inside it
    x[:20] = 8.0 * torch.sign(x[:20])  # 0.005% far outliers
    obs = EntropyObserver("int8", None)
    for part in x.split(100_000):
        obs.update(part)
    lo, hi = obs.range()
    assert 0.95 <= float(hi) <= 1.1 and float(lo) == -float(hi)


@pytest.mark.parametrize("fmt", ["uint8", "int8_asym", "int8"])
def test_post_relu_threshold_stays_well_above_the_zero_spike(fmt):
    g = torch.Generator().manual_seed(6)
    x = torch.relu(torch.randn(500_000, generator=g))  # half the values are exact zeros
    obs = EntropyObserver(fmt, None)
    for part in x.split(125_000):
        obs.update(part)
    lo, hi = obs.range()
    assert float(lo) == 0.0
    assert float(hi) >= 0.6 * float(x.max()), f"{fmt}: threshold {float(hi):.3f} of max {float(x.max()):.3f}"


def test_levels_follow_the_grid_the_quantizer_uses():
    assert integer_levels(get_format("int8"), never_negative=False) == 128
    assert integer_levels(get_format("int8"), never_negative=True) == 128  # no zero point: 128 codes >= 0
    assert integer_levels(get_format("uint8"), never_negative=True) == 256
    assert integer_levels(get_format("int8_asym"), never_negative=True) == 256
    assert integer_levels(get_format("int8_asym"), never_negative=False) == 128
    assert integer_levels(get_format("int4"), never_negative=False) == 8


@pytest.mark.parametrize("fmt", ["fp8_e4m3", "fp4_e2m1"])
def test_minifloat_grid_search_clips_outliers_but_not_the_bulk(fmt):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(300_000, generator=g)
    x[:5] = 40.0
    obs = EntropyObserver(fmt, None)
    obs.update(x)
    _, hi = obs.range()
    assert 2.5 <= float(hi) <= 6.0, float(hi)


def test_search_on_2048_bins_is_fast():
    hist = torch.distributions.Normal(0.0, 1.0).log_prob(torch.linspace(0, 6, 2048)).exp() * 1e6
    start = time.perf_counter()
    entropy_stop_bin(hist.round(), get_format("int8"), 128)
    assert time.perf_counter() - start < 2.0  # a few ms (prefix sums); a loop per bin takes minutes


def test_a_zero_point_format_spends_no_codes_beyond_the_data():
    # signed data in [-1, 3]: a symmetric threshold t would give [-t, t]; int8_asym keeps [-1, min(t, 3)]
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.rand(20000, generator=g) * 3, -torch.rand(2000, generator=g)])
    asym, sym = EntropyObserver(get_format("int8_asym")), EntropyObserver(get_format("int8"))
    asym.update(x)
    sym.update(x)
    lo, hi = asym.range()
    s_lo, s_hi = sym.range()
    assert float(lo) >= float(x.min()) - 1e-6 and float(hi) <= float(x.max()) + 1e-6
    assert float(s_lo) == -float(s_hi) and float(lo) > float(s_lo)
