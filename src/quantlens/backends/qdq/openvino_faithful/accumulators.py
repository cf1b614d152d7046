"""The integer accumulators of oneDNN's u8 x s8 convolution and FC kernels, including the int16
saturation of input-channel pairs on CPUs without VNNI (AVX2 vpmaddubsw)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_I16 = 32767.0


def _pair_correction(cols: torch.Tensor, w: torch.Tensor) -> torch.Tensor | None:
    """sum over pairs of sat16(x_a w_a + x_b w_b) - (x_a w_a + x_b w_b), per output: (B, O, L), or None.

    cols: (B, C * K, L) input codes (row c * K + k: channel c at kernel tap k, as F.unfold lays them out);
    w: (O, C, K) weight codes, C even. Pairs are input channels (2i, 2i+1) at one tap; only same-sign
    weights with 255 (|w_a| + |w_b|) > 32767 can leave the int16 range, so only those are computed."""
    n_taps = w.shape[2]
    we, wo = w[:, 0::2], w[:, 1::2]  # (O, C/2, K)
    risky = (we * wo > 0) & ((we.abs() + wo.abs()) * 255 > _I16)
    if not bool(risky.any()):
        return None
    o, p, k = risky.nonzero(as_tuple=True)
    rows_a, rows_b = 2 * p * n_taps + k, (2 * p + 1) * n_taps + k
    w_a, w_b = we[o, p, k][None, :, None], wo[o, p, k][None, :, None]
    batch, _, length = cols.shape
    out = torch.zeros(batch, w.shape[0], length, dtype=torch.float32)
    step = max(1, (1 << 22) // max(batch * length, 1))  # bound the (B, R, L) temporaries
    for i in range(0, len(o), step):
        part = slice(i, i + step)
        v = cols[:, rows_a[part]] * w_a[:, part] + cols[:, rows_b[part]] * w_b[:, part]  # exact in float32
        out.index_add_(1, o[part], v.clamp(-_I16 - 1, _I16) - v)
    return out


def conv_accumulator(x: torch.Tensor, zero_point: float, w: torch.Tensor, stride, pads, dilation,
                     saturate: bool) -> torch.Tensor:
    """int32 accumulator of a u8 x s8 convolution as oneDNN's AVX2 kernel computes it (exact integers
    in float64). x: (B, C, H, W) codes; w: (O, C, kh, kw) codes; pads (top, left, bottom, right)."""
    top, left, bottom, right = pads
    xp = F.pad(x.double(), (left, right, top, bottom), value=float(zero_point))  # padding = zero-point code
    wd = w.double()
    acc = None
    if float(wd.abs().sum((1, 2, 3)).max()) * 255 < 2.0**24:  # integer partial sums below 2^24: float32 exact
        acc = F.conv2d(xp.float(), wd.float(), None, stride, 0, dilation).double()
        if not torch.equal(acc, acc.round()):  # a transform-based algorithm (not a direct sum) was used
            acc = None
    if acc is None:
        acc = F.conv2d(xp, wd, None, stride, 0, dilation)
    if zero_point:
        acc = acc - float(zero_point) * wd.sum((1, 2, 3)).reshape(1, -1, 1, 1)
    if saturate:
        o, c, kh, kw = w.shape
        if c % 2:  # the last channel pairs with a zero channel
            xp, wd, c = F.pad(xp, (0, 0, 0, 0, 0, 1)), F.pad(wd, (0, 0, 0, 0, 0, 1)), c + 1
        cols = F.unfold(xp.float(), (kh, kw), dilation=dilation, stride=stride)  # (B, C * kh * kw, L)
        corr = _pair_correction(cols, wd.reshape(o, c, kh * kw).float())
        if corr is not None:
            acc = acc + corr.double().reshape(acc.shape)
    return acc


def linear_accumulator(x: torch.Tensor, zero_point: float, w: torch.Tensor, saturate: bool) -> torch.Tensor:
    """int32 accumulator of a u8 x s8 fully connected layer (oneDNN AVX2 gemm): x (B, K), w (O, K)."""
    xd, wd = x.double(), w.double()
    acc = xd @ wd.T
    if zero_point:
        acc = acc - float(zero_point) * wd.sum(1)[None]
    if saturate:
        o, k = w.shape
        if k % 2:
            xd, wd = F.pad(xd, (0, 1)), F.pad(wd, (0, 1))
        corr = _pair_correction(xd.float()[:, :, None], wd.reshape(o, -1, 1).float())  # K inputs, one tap
        if corr is not None:
            acc = acc + corr.double().reshape(acc.shape)
    return acc
