"""Per-group histograms over calibration batches in bounded memory, re-binned exactly as the range grows.

Each group keeps 2 * bins counts over [-W, W), bin k covering [(k - bins) w, (k - bins + 1) w)
with w = W / bins, and W a power of two above every |x| seen. When a batch exceeds W, W doubles
(k times) and every 2^k neighbouring bins merge into one (integer counts: no splitting, no
interpolation). Because floor(floor(v / w) / 2^k) = floor(v / (w 2^k)), the result equals binning
all data at once at the final width: the histogram does not depend on the order of the batches,
and its bins are at most 2 * max|x| / bins wide. Signed bins serve both two-sided statistics
(percentiles of x for asymmetric integers, MSE on a signed grid) and |x| (folded).

NaN and +-Inf are not binned (they count as 0); the exact running min/max propagate them, and
observers turn such groups' ranges into NaN (see _common.nan_where_nonfinite).
"""

from __future__ import annotations

import torch

from quantlens.formats.blocks import floor_log2
from quantlens.formats.minifloat import exp2_exact

MIN_LOG2_WIDTH = -100  # W >= 2^-100: smaller magnitudes all share the bins next to zero
MAX_LOG2_WIDTH = 127
CHUNK_ELEMENTS = 1 << 24  # values binned per pass on accelerators (bounds the index temporaries)
CPU_CHUNK_ELEMENTS = 1 << 18  # on the CPU: a chunk and its temporaries stay in cache between the passes


class GroupHistogram:
    """Signed histograms for G groups (rows), `bins` bins per sign; plus exact min/max per group."""

    def __init__(self, bins: int) -> None:
        self.bins = bins
        self.counts: torch.Tensor | None = None  # (G, 2 * bins) int64
        self.log2_width: torch.Tensor | None = None  # (G,) int32: W = 2^log2_width
        self.min: torch.Tensor | None = None  # (G,) float32, NaN/-Inf propagate
        self.max: torch.Tensor | None = None

    @property
    def empty(self) -> bool:
        return self.counts is None

    def update(self, rows: torch.Tensor) -> None:
        """rows: float32 (G, N), one row per group; G must not change between calls.

        One full pass for the exact min/max (which also tells whether the data is finite and
        never negative), then the binning, chunk by chunk (see _count). Only data holding NaN/Inf
        takes extra full passes (the non-finite values are binned as 0)."""
        g, device, b = rows.shape[0], rows.device, self.bins
        n = rows.shape[1]
        lo, hi = _row_min_max(rows)
        if self.counts is None:
            self.counts = torch.zeros((g, 2 * b), dtype=torch.int64, device=device)
            self.log2_width = torch.full((g,), MIN_LOG2_WIDTH, dtype=torch.int32, device=device)
            self.min, self.max = lo, hi
        else:
            self.min, self.max = torch.minimum(self.min, lo), torch.maximum(self.max, hi)
        all_finite, never_negative = torch.stack(
            [(torch.isfinite(lo) & torch.isfinite(hi)).all(), (lo >= 0).all()]).tolist()
        if all_finite:  # min/max finite <=> every value finite (NaN and +-Inf reach them)
            values, amax = rows, torch.maximum(-lo, hi)
        else:
            values = torch.where(torch.isfinite(rows), rows, torch.zeros_like(rows))
            amax = values.abs().amax(dim=1) if n else rows.new_zeros(g)
        # W strictly above amax: 2^(floor(log2 amax) + 1)
        needed = torch.where(amax > 0, floor_log2(torch.where(amax > 0, amax, torch.ones_like(amax))) + 1,
                             MIN_LOG2_WIDTH)
        new_log2 = torch.clamp(torch.maximum(self.log2_width, needed), MIN_LOG2_WIDTH, MAX_LOG2_WIDTH)
        shift = new_log2 - self.log2_width
        grows, capped = torch.stack([(shift != 0).any(), (needed > new_log2).any()]).tolist()
        if grows:
            self._rebin(shift)
        self.log2_width = new_log2
        if n:
            # |x| < W gives bins -b .. b - 1 without clamping (even for bins not a power of two, the
            # product x * b / W stays more than half an ulp below b); a W capped at 2^127 needs it,
            # and bins that are not a power of two get it anyway (rare, and cheap in cache)
            self._count(values, never_negative, clamp=capped or (b & (b - 1)) != 0)

    def _rebin(self, shift: torch.Tensor) -> None:
        # (G,) doublings of W: signed bin s = k - bins becomes s >> shift (floor division by 2^shift)
        b = self.bins
        s = torch.arange(-b, b, device=self.counts.device, dtype=torch.int64)
        k = (s[None, :] >> torch.clamp(shift, 0, 62).to(torch.int64)[:, None]) + b
        self.counts = torch.zeros_like(self.counts).scatter_add_(1, k, self.counts)

    def _count(self, values: torch.Tensor, never_negative: bool, clamp: bool) -> None:
        """Adds floor(x * bins / W) (bins -b .. b - 1) of every value to the counts, chunk by chunk
        of columns: x * (bins / W) into a float buffer (exact for power-of-two bins), floored in
        place (not for never-negative data: there the truncating integer conversion is the floor),
        converted to integers, offset to the group's row, counted with bincount. On the CPU a chunk
        and its buffers stay in cache across these passes: the data is read from memory once."""
        g, n = values.shape
        b = self.bins
        device = values.device
        width = b if never_negative else 2 * b  # never-negative data only reaches the upper half
        target = self.counts[:, b:] if never_negative else self.counts
        base = 0 if never_negative else b
        if g * width <= (1 << 15) and device.type == "cpu":
            index_dtype = torch.int16  # bincount reads less (about 10% faster than int32)
        else:
            index_dtype = torch.int32 if g * width < (1 << 31) else torch.int64
        offset = None
        if g > 1:
            offset = (torch.arange(g, device=device, dtype=index_dtype) * width + base)[:, None]
        elif base:
            offset = base
        inv_width = self.inverse_bin_width()[:, None]  # bins / W: exact for power-of-two bins
        chunk = CPU_CHUNK_ELEMENTS if device.type == "cpu" else CHUNK_ELEMENTS
        step = max(1, max(chunk, g * width) // g)  # no smaller than bincount's output
        cols = min(step, n)
        scaled_buf = torch.empty(g * cols, dtype=torch.float32, device=device)
        index_buf = torch.empty(g * cols, dtype=index_dtype, device=device)
        for start in range(0, n, step):  # chunks of the data, not of bins
            part = values[:, start:start + step]
            m = g * part.shape[1]
            scaled = scaled_buf[:m].view(part.shape)
            torch.mul(part, inv_width, out=scaled)
            if clamp:
                scaled.clamp_(-b, b - 1)
            if not never_negative:
                scaled.floor_()
            k = index_buf[:m].view(part.shape)
            k.copy_(scaled)  # truncation toward zero: the floor, as the values are integers or >= 0
            if offset is not None:
                k += offset
            target += torch.bincount(k.view(-1), minlength=g * width).view(g, width)

    def inverse_bin_width(self) -> torch.Tensor:
        """(G,) float32 bins / W."""
        return self.bins * exp2_exact(-self.log2_width)

    def bin_width(self) -> torch.Tensor:
        """(G,) float32 W / bins."""
        return exp2_exact(self.log2_width) / self.bins

    def abs_counts(self) -> torch.Tensor:
        """(G, bins) counts of |x|: bin j covers |x| in [j w, (j + 1) w] (to a bin edge)."""
        b = self.bins
        return self.counts[:, b:] + self.counts[:, :b].flip(1)

    def signed_centres(self) -> torch.Tensor:
        """(G, 2 * bins) float32 bin centres (k - bins + 0.5) * w."""
        s = torch.arange(-self.bins, self.bins, device=self.counts.device, dtype=torch.float32) + 0.5
        return s[None, :] * self.bin_width()[:, None]

    def abs_quantile(self, q: float) -> torch.Tensor:
        """(G,) the q-quantile (0 < q <= 1) of |x| per group, linear within its bin, at most max|x|."""
        value = _quantile(self.abs_counts(), q) * self.bin_width()
        return torch.minimum(value, torch.maximum(-self.min, self.max))

    def signed_quantile(self, q: float) -> torch.Tensor:
        """(G,) the q-quantile (0 <= q <= 1) of x per group, linear within its bin, within [min, max]."""
        value = (_quantile(self.counts, q) - self.bins) * self.bin_width()
        return torch.minimum(torch.maximum(value, self.min), self.max)


def _row_min_max(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(G,) min and max of each row (0 for empty rows), NaN propagating. One pass for a single
    row; amin and amax for several (aminmax along a dimension is an order of magnitude slower
    on the CPU)."""
    g, n = rows.shape
    if n == 0:
        return rows.new_zeros(g), rows.new_zeros(g)
    if g == 1:
        lo, hi = torch.aminmax(rows)
        return lo.reshape(1), hi.reshape(1)
    return rows.amin(dim=1), rows.amax(dim=1)


def _quantile(counts: torch.Tensor, q: float) -> torch.Tensor:
    """(G,) position in bins (float32) of the q-quantile of each row of counts (G, K): bin index
    plus the fraction of that bin's count below the target (uniform within the bin)."""
    cdf = torch.cumsum(counts, dim=1).to(torch.float64)
    target = q * cdf[:, -1:]  # (G, 1)
    k = torch.clamp(torch.searchsorted(cdf, target), max=counts.shape[1] - 1)  # first bin reaching it
    in_bin = counts.gather(1, k).to(torch.float64)
    below = cdf.gather(1, k) - in_bin
    frac = torch.where(in_bin > 0, (target - below) / torch.where(in_bin > 0, in_bin, 1.0), 0.0)
    return (k.to(torch.float64) + torch.clamp(frac, 0.0, 1.0)).reshape(-1).to(torch.float32)
