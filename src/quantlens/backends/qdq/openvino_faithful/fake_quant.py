"""The float32 formulas OpenVINO's CPU plugin quantizes with: FakeQuantize ranges and constants, a
standalone FQ (Snippets), an int8 primitive's requantization post-op and a fused residual's first FQ."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

f32 = np.float32


def _fma(a: torch.Tensor, b, c) -> torch.Tensor:
    """float32 fused multiply-add: the exact a * b + c (float64) rounded once to float32."""
    return (a.double() * torch.as_tensor(b, dtype=torch.float64) + torch.as_tensor(c, dtype=torch.float64)).float()


def _rhte(x):
    return np.rint(f32(x)).astype(f32)


@dataclass(frozen=True)
class FqRange:
    """A FakeQuantize input range (scalars, or (C,) arrays along the channel axis) with u8 output."""

    il: np.ndarray
    ih: np.ndarray

    @classmethod
    def of_quantizer(cls, scale: np.ndarray, zero_point: np.ndarray) -> FqRange:
        """OpenVINO's ONNX frontend: il = s * (0 - zp), ih = s * (255 - zp), in float32."""
        s, zp = np.asarray(scale, f32), np.asarray(zero_point).astype(f32)
        return cls(f32(s * f32(f32(0) - zp)), f32(s * f32(f32(255) - zp)))

    def fold(self, sub, mul) -> FqRange:
        """LPT's fusion of a pending (x - sub) * mul into the FQ: il / mul, then + sub."""
        il, ih = self.il, self.ih
        if mul is not None:
            il, ih = f32(il / np.asarray(mul, f32)), f32(ih / np.asarray(mul, f32))
        if sub is not None:
            il, ih = f32(il + np.asarray(sub, f32)), f32(ih + np.asarray(sub, f32))
        return FqRange(il, ih)

    @property
    def isc(self):
        return f32(f32(255) / f32(self.ih - self.il))

    @property
    def ish(self):
        """The CPU FakeQuantize node's input shift, -il * 255 / (ih - il) (not -il * isc)."""
        return f32(f32(-self.il * f32(255)) / f32(self.ih - self.il))


def _per_channel(v, ndim: int) -> torch.Tensor:
    """A scalar or (C,) constant as a float32 tensor broadcasting along axis 1 of an ndim tensor."""
    t = torch.from_numpy(np.array(v, dtype=f32))
    return t if t.dim() == 0 else t.reshape([1, -1] + [1] * (ndim - 2))


def standalone_fq(x: torch.Tensor, fq: FqRange) -> torch.Tensor:
    """A FakeQuantize OpenVINO runs as a Snippets subgraph: clamp, multiply by isc, subtract f32(il * isc),
    round half to even and saturate to u8 (codes as float32)."""
    il, ih, isc = (_per_channel(v, x.dim()) for v in (fq.il, fq.ih, fq.isc))
    shift = _per_channel(f32(fq.il * fq.isc), x.dim())
    y = torch.minimum(torch.maximum(x.float(), il), ih) * isc
    return torch.clamp(torch.round(y - shift), 0.0, 255.0)


def requantize(t: torch.Tensor, fq: FqRange) -> torch.Tensor:
    """The last FQ post-op of an int8 primitive with u8 output (per-tensor): when its input shift is 0
    (zp = 0) it becomes oneDNN's dst scale 1/isc, applied as a multiply by f32(1 / f32(1 / isc));
    otherwise an eltwise linear, fma(t, isc, ish); then round half to even and saturate."""
    isc, ish = fq.isc, fq.ish
    clo, chi = _rhte(f32(f32(fq.il * isc) + ish)), _rhte(f32(f32(fq.ih * isc) + ish))
    if abs(ish) < f32(f32(chi - clo) * f32(1e-5)):
        ish = f32(0)
    if ish == 0:
        v = t.float() * float(f32(f32(1) / f32(np.float64(1) / np.float64(isc))))
    else:
        v = _fma(t, isc, ish)
    return torch.clamp(torch.round(v), 0.0, 255.0)


@dataclass(frozen=True)
class ResidualFq:
    """The first FQ of a fused residual (conv -> Q1 -> DQ -> Add): its range, and the output range LPT
    gave it when it folded the Add's rescaling r = s1 / s_other and shift zp1' into it."""

    fq: FqRange
    ol: np.float32
    oh: np.float32

    @classmethod
    def of(cls, fq: FqRange, s1, zp1, s_other, zp_other) -> ResidualFq:
        r = f32(f32(s1) / f32(s_other))  # SC1' = SC1 / SC2
        shift = f32(f32(zp1) + f32(f32(f32(zp_other) * f32(s_other)) / f32(s1)))  # SH1' = SH1 + SC2 * SH2 / SC1
        return cls(fq, f32(f32(f32(0) - shift) * r), f32(f32(f32(255) - shift) * r))

    def apply(self, t: torch.Tensor, *, rounding: bool, acc: torch.Tensor | None = None,
              dq: torch.Tensor | None = None) -> torch.Tensor:
        """The FQ post-op's float output (in units of the other branch's scale). `acc`/`dq`: the conv's
        accumulator and multiplier when it has no bias (the scale then fuses into oneDNN's weight scale)."""
        isc, ish = self.fq.isc, self.fq.ish
        osc, osh = f32(f32(self.oh - self.ol) / f32(255)), self.ol
        clo, chi = sorted((_rhte(f32(f32(self.fq.il * isc) + ish)), _rhte(f32(f32(self.fq.ih * isc) + ish))))
        if rounding:
            q = torch.clamp(torch.round(_fma(t, isc, ish)), float(clo), float(chi))
            return _fma(q, osc, osh)
        lo, hi = sorted((f32(f32(clo * osc) + osh), f32(f32(chi * osc) + osh)))
        isc2, ish2 = f32(isc * osc), f32(f32(ish * osc) + osh)
        if abs(ish2) < f32(f32(hi - lo) * f32(1e-5)):
            ish2 = f32(0)
        if ish2 == 0 and acc is not None:
            u = acc.float() * (dq * float(isc2)).float()
        elif ish2 == 0:
            u = t.float() * float(isc2)
        else:
            u = _fma(t, isc2, ish2)
        return torch.clamp(u, float(lo), float(hi))
