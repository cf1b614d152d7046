"""TensorRT-style KL-divergence threshold search on a histogram of |x|, vectorised over candidates.

For every candidate stop bin i (thresholds at bin edges i * w, i = levels .. n):
    P = hist[:i], with the mass of hist[i:] (the values the threshold would clip) added to P[i - 1]
    Q = hist[:i] merged onto the quantization levels, each level's mass shared equally among the
        bins of that level where P is non-zero (zeros stay zero): the data as the quantizer sees it
    KL(P || Q) = sum_j p_j log(p_j / q_j)    (p, q: P and Q each normalised to sum 1)
and the threshold is the edge of the candidate with the smallest KL (the first, on ties).
Q is built from the unclipped slice, as TensorRT does, not from P: built from P, a candidate
whose levels each hold one bin would give Q = P and KL = 0 however much it clips. Where P has
mass and Q none (the clipped mass lands in an otherwise empty level), KL is infinite.

Levels: integer grids merge bins into `levels` equal runs (bin j of candidate i is in level
floor(j * levels / i), TensorRT's uniform merge); minifloat grids merge bins by the grid value
their centre is nearest to, at the scale that maps the candidate threshold onto the format's max.

All candidates are evaluated with tensor ops (scatter/gather over a candidates x bins matrix),
in chunks of candidates so the temporaries stay a few MB: 2048 bins take well under a second.
"""

from __future__ import annotations

import torch

from quantlens.formats.types import FloatFormat

CHUNK_ENTRIES = 1 << 20  # candidates x bins per chunk


def _integer_levels(stops: torch.Tensor, j: torch.Tensor, levels: int) -> torch.Tensor:
    # (C, n) level of bin j for candidate stop i: floor(j * levels / i); bins at or past i -> `levels`
    level = torch.div(j[None, :] * levels, stops[:, None], rounding_mode="floor")
    return torch.where(j[None, :] < stops[:, None], level, levels)


def _minifloat_levels(stops: torch.Tensor, j: torch.Tensor, midpoints: torch.Tensor) -> torch.Tensor:
    # (C, n): index in the non-negative grid of the grid value nearest centre_j * fmt.max / threshold_i
    # (midpoints: between consecutive grid values, in units of fmt.max; values past the max land
    # on it, as saturation does; a centre exactly on a midpoint may go either way)
    v = (j[None, :].to(torch.float32) + 0.5) / stops[:, None].to(torch.float32)
    level = torch.searchsorted(midpoints, v)
    return torch.where(j[None, :] < stops[:, None], level, midpoints.numel() + 1)


def kl_divergences(hist: torch.Tensor, stops: torch.Tensor, level_of, n_levels: int) -> torch.Tensor:
    """KL(P || Q) (float64, (C,)) for candidate stops (int64, (C,), each 1 <= i <= len(hist)).
    hist: (n,) float64 counts; level_of(stops, j) -> (C, n) int64 level per bin, n_levels for bins
    at or past the stop."""
    n = hist.numel()
    j = torch.arange(n, device=hist.device)
    total = hist.sum()
    cum = torch.cumsum(hist, 0)
    inside = j[None, :] < stops[:, None]
    p = torch.where(inside, hist[None, :], torch.zeros((), dtype=hist.dtype, device=hist.device))
    outliers = (total - cum[stops - 1])[:, None]  # mass the threshold clips onto its last bin
    p = p.scatter_add(1, (stops - 1)[:, None], outliers)
    level = level_of(stops, j)
    nonzero = p > 0
    unclipped = torch.where(inside, hist[None, :], torch.zeros((), dtype=hist.dtype, device=hist.device))
    sums = torch.zeros((stops.numel(), n_levels + 1), dtype=p.dtype, device=p.device)
    sums.scatter_add_(1, level, unclipped)
    counts = torch.zeros_like(sums).scatter_add_(1, level, nonzero.to(p.dtype))
    q = torch.where(nonzero, sums.gather(1, level) / torch.clamp(counts.gather(1, level), min=1.0), 0.0)
    q = q / (total - outliers)  # normalised: Q holds the unclipped mass only
    p = p / total
    ratio = torch.where(nonzero, p / torch.where(nonzero, q, 1.0), 1.0)  # inf where p > 0 = q
    return (p * torch.log(ratio)).sum(1)


def entropy_stop_bin(hist: torch.Tensor, fmt, levels: int | None) -> int:
    """The stop bin i (threshold i * bin width) minimising KL(P || Q) over candidates
    max(levels, 1) .. len(hist) (integers: `levels` levels; minifloats: levels None, the grid).
    hist: (n,) counts of |x| with the spike at zero already removed and the empty tail cut."""
    hist = hist.to(torch.float64)
    n = hist.numel()
    if isinstance(fmt, FloatFormat):
        grid = fmt.grid().to(hist.device)
        grid = grid[grid >= 0] / fmt.max  # the grid at the scale mapping the threshold onto 1
        midpoints = ((grid[1:] + grid[:-1]) / 2).contiguous()
        n_levels, first = grid.numel(), grid.numel()  # as many bins as levels, like integers

        def level_of(stops, j):
            return _minifloat_levels(stops, j, midpoints)
    else:
        n_levels, first = levels, levels

        def level_of(stops, j):
            return _integer_levels(stops, j, levels)
    if n <= first or float(hist.sum()) == 0.0:
        return n
    candidates = torch.arange(first, n + 1, device=hist.device)
    per_chunk = max(1, CHUNK_ENTRIES // n)
    kl = torch.cat([kl_divergences(hist, candidates[s:s + per_chunk], level_of, n_levels)
                    for s in range(0, candidates.numel(), per_chunk)])  # chunks of candidates, for memory
    return int(candidates[torch.argmin(kl)])
