"""MSE observer: the vectorised search against a plain loop on each format's own grid."""

from __future__ import annotations

import pytest
import torch

from quantlens.observers import MseObserver
from quantlens.scaling import PerChannel, quantize_dequantize


def _loop_reference(w: torch.Tensor, fmt: str, ratios: torch.Tensor, asymmetric: bool) -> torch.Tensor:
    """Best ratio per row by trying each ratio on each row separately."""
    best = []
    for row in w:
        errors = []
        for r in ratios:
            if asymmetric:
                y = quantize_dequantize(row, fmt, min_val=r * row.min(), max_val=r * row.max())
            else:
                y = quantize_dequantize(row, fmt, amax=r * row.abs().max())
            errors.append(float((y - row).square().mean()))
        best.append(ratios[min(range(len(errors)), key=lambda i: (errors[i], i))])
    return torch.stack(best)


@pytest.mark.parametrize("fmt, asymmetric", [("int4", False), ("fp4_e2m1", False), ("fp8_e4m3", False),
                                             ("int4_asym", True)])
def test_per_channel_weights_match_a_plain_loop(fmt, asymmetric):
    g = torch.Generator().manual_seed(8)
    w = torch.randn(6, 96, generator=g) * torch.linspace(0.1, 3.0, 6).reshape(6, 1)
    w[0, 0] = 12.0  # an outlier worth clipping
    obs = MseObserver(fmt, 0, grid=25)
    obs.update(w)
    lo, hi = obs.range()
    ratio = _loop_reference(w, fmt, obs.ratios("cpu"), asymmetric)
    torch.testing.assert_close(hi, ratio * w.amax(1), rtol=0, atol=0)
    torch.testing.assert_close(lo, ratio * w.amin(1), rtol=0, atol=0)


def test_int4_clips_gaussian_weights_and_int8_barely():
    g = torch.Generator().manual_seed(9)
    w = torch.randn(32, 512, generator=g)
    for fmt, low, high in (("int4", 0.5, 0.9), ("int8", 0.9, 1.0)):
        obs = MseObserver(fmt, 0)
        obs.update(w)
        ratio = obs.range()[1] / w.amax(1)
        assert low <= float(ratio.mean()) <= high, (fmt, float(ratio.mean()))


def test_histogram_mode_agrees_with_the_values():
    g = torch.Generator().manual_seed(10)
    x = torch.randn(64, 8, 6, 6, generator=g)
    x[0, 0, 0, 0] = 9.0
    exact = MseObserver("int4", 1)
    exact.update(x)
    batches = MseObserver("int4", 1)
    for part in x.split(16):
        batches.update(part)
    assert batches.hist.counts is not None and exact.hist.empty
    e_lo, e_hi = exact.range()
    b_lo, b_hi = batches.range()
    x_rows = x.movedim(1, 0).reshape(8, -1)

    def err(hi):
        y = quantize_dequantize(x_rows, "int4", PerChannel(0), amax=hi)
        return (y - x_rows).square().mean(1)

    # the histogram's choice is within a few percent of the exact optimum's error
    assert torch.all(err(b_hi) <= err(e_hi) * 1.05)
    assert torch.allclose(b_hi, e_hi, rtol=0.1)


def test_asymmetric_post_relu_uses_the_unsigned_grid():
    g = torch.Generator().manual_seed(11)
    x = torch.relu(torch.randn(4, 4000, generator=g))
    obs = MseObserver("uint4", None)
    for part in x.split(1):
        obs.update(part)
    lo, hi = obs.range()
    assert float(lo) == 0.0 and 0.4 * float(x.max()) < float(hi) < float(x.max())
