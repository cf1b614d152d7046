"""MSE calibration: per group, the clipping range minimising the squared error on the format's grid.

Candidates are the observed range scaled by ratios r in [min_ratio, 1] (`grid` of them): (r * lo,
r * hi), i.e. amax * r for symmetric formats, and both ends scaled together for asymmetric
integers. Each candidate's error is measured by fake-quantizing on the format's own grid with
quantlens.scaling (compute_qparams + fake_quantize, so INT-n, FP8, FP6 and FP4 all work), for all
candidates and groups at once (candidates x groups rows, in chunks of rows to bound memory).

Data: a group seen in exactly one update of at most `EXACT_MAX_NUMEL` values (a weight, viewed
as (out_channels, fan_in) with axis 0) is searched on its values directly. Otherwise each group
keeps a signed histogram (histogram.py, bounded memory, exact re-binning) and the error is the
count-weighted squared error at the bin centres (accurate to the bin width, 2 * max|x| / bins at
most; rounding errors finer than a bin are not resolved). On equal errors the larger ratio wins
(less clipping). Groups whose data held NaN or Inf get a NaN range, as with `max`.
"""

from __future__ import annotations

import torch

from quantlens.observers._common import (
    group_rows,
    is_asymmetric,
    nan_where_nonfinite,
    number_option,
    reject_unknown,
    scalar_format,
)
from quantlens.observers.base import OBSERVERS
from quantlens.observers.histogram import GroupHistogram
from quantlens.scaling.fake_quant import quantize_dequantize
from quantlens.scaling.granularity import PerChannel

EXACT_MAX_NUMEL = 1 << 22  # one update up to this size is searched on its values
CHUNK_ELEMENTS = 1 << 23  # candidate rows x values per fake-quantization pass


@OBSERVERS.register("mse")
class MseObserver:
    """Options: `grid` candidate ratios (default 100), `min_ratio` in (0, 1] (default 0.2, the
    smallest clipping ratio tried), `bins` per sign for the histogram (default 2048)."""

    def __init__(self, fmt=None, axis: int | None = None, *, grid: int = 100, min_ratio: float = 0.2,
                 bins: int = 2048, **unknown) -> None:
        reject_unknown("mse", unknown, ("grid", "min_ratio", "bins"))
        self.grid = number_option("mse", "grid", grid, low=1, high=10_000, integer=True)
        self.min_ratio = number_option("mse", "min_ratio", min_ratio, low=0.0, high=1.0, low_open=True)
        self.bins = number_option("mse", "bins", bins, low=16, high=1 << 16, integer=True)
        self.fmt = scalar_format("mse", fmt)
        self.axis = axis
        self.hist = GroupHistogram(self.bins)
        self._values: torch.Tensor | None = None  # the first update's rows, while it is the only one
        self._updates = 0
        self._range: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, x: torch.Tensor) -> None:
        rows = group_rows(x, self.axis)
        if self._updates == 1 and self._values is not None:  # a second batch: histogram mode from now on
            self.hist.update(self._values)
            self._values = None
        if self._updates == 0 and rows.numel() <= EXACT_MAX_NUMEL:
            self._values = rows
        else:
            self.hist.update(rows)
        self._updates += 1
        self._range = None

    @property
    def calibrated(self) -> bool:
        return self._updates > 0

    def ratios(self, device) -> torch.Tensor:
        """(R,) float32 candidate ratios, descending from 1 (ties go to the first: less clipping)."""
        return torch.linspace(1.0, self.min_ratio, self.grid, dtype=torch.float32, device=device)

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._updates:
            raise RuntimeError("observer has seen no data")
        if self._range is None:
            self._range = self._search()
        return self._range

    def _search(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._values is not None:
            lo, hi = torch.aminmax(self._values, dim=1)
            points, weights = self._values, None
        else:
            lo, hi = self.hist.min, self.hist.max
            points, weights = self.hist.signed_centres(), self.hist.counts.to(torch.float32)
        ratios = self.ratios(points.device)
        errors = candidate_errors(points, weights, lo, hi, ratios, self.fmt)  # (R, G)
        best = ratios[torch.argmin(errors, dim=0)]  # (G,)
        out_lo = nan_where_nonfinite(best * lo, lo, hi)
        out_hi = nan_where_nonfinite(best * hi, lo, hi)
        if self.axis is None:
            out_lo, out_hi = out_lo.reshape(()), out_hi.reshape(())
        return out_lo, out_hi


def candidate_errors(points: torch.Tensor, weights: torch.Tensor | None, lo: torch.Tensor, hi: torch.Tensor,
                     ratios: torch.Tensor, fmt) -> torch.Tensor:
    """(R, G) mean squared fake-quantization error of each group's points (G, N) (weighted by
    `weights` (G, N), or equally) with the range (r * lo, r * hi) for each ratio r in `ratios` (R,).
    Non-finite points are ignored (their groups get a NaN range anyway)."""
    g, n = points.shape
    points = torch.where(torch.isfinite(points), points, torch.zeros_like(points))
    lo = torch.where(torch.isfinite(lo), lo, torch.zeros_like(lo))
    hi = torch.where(torch.isfinite(hi), hi, torch.zeros_like(hi))
    total = weights.sum(1) if weights is not None else torch.full((g,), float(n), device=points.device)
    per_chunk = max(1, CHUNK_ELEMENTS // max(g * n, 1))  # ratios per pass
    out = []
    for start in range(0, ratios.numel(), per_chunk):  # chunks of candidates, for memory
        r = ratios[start:start + per_chunk][:, None]  # (Rc, 1)
        rows = points.expand(r.shape[0], g, n).reshape(-1, n)  # (Rc * G, N)
        if is_asymmetric(fmt):
            stats = {"min_val": (r * lo).reshape(-1), "max_val": (r * hi).reshape(-1)}
        else:
            stats = {"amax": (r * torch.maximum(-lo, hi)).reshape(-1)}
        y = quantize_dequantize(rows, fmt, PerChannel(0), path="eager", **stats)
        err = (y - rows).square().reshape(r.shape[0], g, n)
        err = (err * weights).sum(2) if weights is not None else err.sum(2)
        out.append(err / torch.clamp(total, min=1.0))
    return torch.cat(out)
