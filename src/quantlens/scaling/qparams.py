"""Scales (and zero points) per group, from a tensor or from calibrated statistics.

Rules, per group (one scale each; see granularity.py):
  integers, symmetric:   scale = amax / qmax, zero_point = 0
  integers, asymmetric:  lo = min(min_val, 0), hi = max(max_val, 0)
                         scale = (hi - lo) / (qmax - qmin), zero_point = clamp(qmin - round(lo / scale))
  minifloats:            scale = amax / format.max (the largest magnitude lands on the largest value)
  block formats:         their own rule (formats/blocks.py: OCP MX power-of-two, NVFP4 two-level)
`scale_kind="pow2"` rounds a scalar format's scale *up* to a power of two, so amax never clips.

Degenerate groups: amax == 0 (or hi == lo == 0) gives scale 1 (the group is all zeros); a tiny
positive scale is raised to 2^-126 so its reciprocal stays finite; a NaN or Inf statistic gives a
NaN scale, so that group's outputs are NaN (NaN propagates instead of vanishing).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import torch

from quantlens.errors import ConfigError
from quantlens.formats.blocks import MX_SCALE_RULES, mx_scales_from_range, nvfp4_scales_from_range
from quantlens.formats.kernels import Kernel, KernelPath
from quantlens.formats.minifloat import exp2_exact
from quantlens.formats.registry import get_format
from quantlens.formats.rounding import as_float32
from quantlens.formats.types import BlockFormat, IntFormat, NumberFormat
from quantlens.scaling.granularity import Granularity, GroupLayout, resolve_granularity

ScaleKind = Literal["fp32", "pow2"]
SCALE_KINDS: tuple[str, ...] = ("fp32", "pow2")
MIN_SCALE = 2.0**-126  # smallest normal float32: 1 / MIN_SCALE = 2^126 is finite


@dataclass(frozen=True)
class QuantParams:
    """The scale and zero point fake quantization uses; every output value equals

        integers:     (q - zero_point) * scale            q an integer in [qmin, qmax]
        minifloats:   (g * scale) * tensor_scale          g a value of the format's grid
        block formats (g * scale) * tensor_scale          g an element value, scale per block

    computed in float32 exactly as written. `scale` has the granularity's scale shape (same rank
    as the tensor); `zero_point` (int32) has the same shape (a broadcast view of 0 unless the format
    is an asymmetric integer); `tensor_scale` (0-d) is 1 except for NVFP4's per-tensor FP32 scale.
    Inputs are divided by the scale as x * (1 / (scale * tensor_scale)).
    """

    scale: torch.Tensor
    zero_point: torch.Tensor
    tensor_scale: torch.Tensor
    granularity: Granularity


def _check_scale_kind(fmt: NumberFormat, scale_kind: str) -> None:
    if scale_kind not in SCALE_KINDS:
        raise ConfigError(f"scale_kind must be one of {', '.join(SCALE_KINDS)}, got {scale_kind!r}")
    if isinstance(fmt, BlockFormat) and scale_kind != "fp32":
        raise ConfigError(f"{fmt.name} defines its own scales (power-of-two for MX, E4M3 for NVFP4); "
                          f"scale_kind={scale_kind!r} applies to scalar formats only")


def _check_mx_rule(fmt: NumberFormat, mx_rule: str) -> None:
    if mx_rule not in MX_SCALE_RULES:
        raise ConfigError(f"mx_rule must be one of {', '.join(MX_SCALE_RULES)}, got {mx_rule!r}")
    if mx_rule != "floor" and not (isinstance(fmt, BlockFormat) and fmt.rule == "ocp_mx"):
        raise ConfigError(f"mx_rule={mx_rule!r} chooses OCP MX shared scales; {fmt.name} is not an MX format "
                          f"(leave mx_rule at 'floor')")


def _check_statistics(fmt: NumberFormat, amax, min_val, max_val) -> None:
    if (min_val is None) != (max_val is None):
        raise ConfigError("give both min_val and max_val, or neither")
    if amax is not None and min_val is not None:
        raise ConfigError("give amax or min_val/max_val, not both")
    if isinstance(fmt, BlockFormat):
        if fmt.rule == "ocp_mx" and (amax is not None or min_val is not None):
            raise ConfigError(f"{fmt.name}: MX scales come from each block's own maximum; "
                              "amax/min_val/max_val are not accepted")
        if fmt.rule == "nvfp4" and min_val is not None:
            raise ConfigError(f"{fmt.name}: pass the calibrated per-tensor amax, not min_val/max_val")
    elif isinstance(fmt, IntFormat) and not fmt.symmetric and amax is not None:
        raise ConfigError(f"{fmt.name} is asymmetric: pass min_val and max_val, not amax")


def _stat(value, layout: GroupLayout, name: str, device) -> torch.Tensor:
    """A calibrated statistic as a (P|1, G, 1, Q|1) float32 tensor: a scalar, the scale shape,
    or anything with one entry per group (e.g. a (C,) per-channel vector)."""
    t = torch.as_tensor(value, dtype=torch.float32, device=device)
    groups = torch.Size(layout.scale4_shape).numel()
    if t.numel() == groups:
        return t.reshape(layout.scale4_shape)
    if t.numel() == 1:
        return t.reshape(1, 1, 1, 1).expand(layout.scale4_shape)
    raise ConfigError(f"{name} has {t.numel()} entries (shape {tuple(t.shape)}); {layout.granularity!r} on a "
                      f"{tuple(layout.shape)} tensor needs 1 or {groups} (scale shape {layout.scale_shape})")


def _group_min_max(x4, dims):
    # dims: the reduced dims of the (P, G, L, Q) view (a constant per granularity)
    return torch.amin(x4, dim=dims, keepdim=True), torch.amax(x4, dim=dims, keepdim=True)


def _safe(scale, stat_is_zero):
    # zero range -> 1; tiny -> MIN_SCALE; NaN/Inf statistics -> NaN
    finite = torch.isfinite(scale)
    scale = torch.where(stat_is_zero, torch.ones_like(scale), torch.clamp(scale, min=MIN_SCALE))
    return torch.where(finite, scale, torch.full_like(scale, torch.nan))


def pow2_ceil(scale: torch.Tensor) -> torch.Tensor:
    """Smallest power of two >= scale (NaN stays NaN; capped at 2^127)."""
    finite = torch.isfinite(scale) & (scale > 0)
    mant, exp = torch.frexp(torch.where(finite, scale, torch.ones_like(scale)))  # scale = mant * 2^exp
    e = torch.where(mant == 0.5, exp - 1, exp).to(torch.int32)
    return torch.where(finite, exp2_exact(torch.clamp(e, -149, 127)), scale)


def _symmetric_scale(lo, hi, top, pow2):
    """amax / top per group (top: float32 0-d, qmax or the format's max; pow2: bool 0-d)."""
    amax = torch.maximum(-lo, hi)
    scale = _safe(amax / top, amax == 0)
    return torch.where(pow2, pow2_ceil(scale), scale)


def _asymmetric_scale(lo, hi, qlim, pow2):
    """(scale, zero_point as float32) per group; qlim: float32 [qmin, qmax]."""
    lo, hi = torch.clamp(lo, max=0.0), torch.clamp(hi, min=0.0)  # the range must hold 0 exactly
    width = hi - lo
    scale = _safe(width / (qlim[1] - qlim[0]), width == 0)
    scale = torch.where(pow2, pow2_ceil(scale), scale)
    zero_point = torch.minimum(torch.maximum(qlim[0] - torch.round(lo / scale), qlim[0]), qlim[1])
    # a NaN scale leaves the zero point unused: store 0
    return scale, torch.where(torch.isfinite(zero_point), zero_point, torch.zeros_like(zero_point))


GROUP_MIN_MAX = Kernel(_group_min_max)
SYMMETRIC_SCALE = Kernel(_symmetric_scale)
ASYMMETRIC_SCALE = Kernel(_asymmetric_scale)


@functools.lru_cache(maxsize=256)
def _constant(value, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(value, dtype=dtype, device=device)


def _reject_negative(t: torch.Tensor, name: str) -> None:
    if bool((t < 0).any()):
        raise ConfigError(f"{name} must be >= 0 (it is a largest magnitude), got a negative entry")


def _observed_range(x4, layout: GroupLayout, amax, min_val, max_val, path) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group (min, max) in the 4-D scale shape: given, from a given amax (-amax, amax), or from x4."""
    dev = x4.device
    if min_val is not None:
        return _stat(min_val, layout, "min_val", dev), _stat(max_val, layout, "max_val", dev)
    if amax is not None:
        a = _stat(amax, layout, "amax", dev)
        _reject_negative(a, "amax")
        return -a, a
    if x4.numel() == 0:
        zeros = x4.new_zeros(layout.scale4_shape)
        return zeros, zeros
    return GROUP_MIN_MAX(x4, layout.reduce_dims, path=path)


def compute_qparams_arranged(x4: torch.Tensor, layout: GroupLayout, fmt: NumberFormat, *, amax=None,
                             min_val=None, max_val=None, scale_kind: ScaleKind = "fp32",
                             path: KernelPath = "auto", mx_rule: str = "floor") -> QuantParams:
    """`compute_qparams` on a tensor already arranged by `layout` (saves a second padding copy)."""
    _check_scale_kind(fmt, scale_kind)
    _check_mx_rule(fmt, mx_rule)
    _check_statistics(fmt, amax, min_val, max_val)
    dev = x4.device
    zeros = torch.zeros((), dtype=torch.int32, device=dev).expand(layout.scale_shape)  # a view: no fill pass
    one = torch.ones((), dtype=torch.float32, device=dev)
    pow2 = _constant(scale_kind == "pow2", torch.bool, dev)

    if isinstance(fmt, BlockFormat) and fmt.rule == "nvfp4":
        lo, hi = _observed_range(x4, layout, None, None, None, path)
        given = None
        if amax is not None:
            given = torch.as_tensor(amax, dtype=torch.float32, device=dev)
            if given.numel() != 1:
                raise ConfigError(f"{fmt.name}: amax is the per-tensor maximum (one number), "
                                  f"got shape {tuple(given.shape)}")
            _reject_negative(given, "amax")
        block_scale, tensor_scale = nvfp4_scales_from_range(lo, hi, given, path=path)
        return QuantParams(layout.scale_from4(block_scale), zeros, tensor_scale, layout.granularity)

    lo, hi = _observed_range(x4, layout, amax, min_val, max_val, path)
    if isinstance(fmt, BlockFormat):  # OCP MX
        scale = mx_scales_from_range(lo, hi, fmt, rule=mx_rule, path=path)
        return QuantParams(layout.scale_from4(scale), zeros, one, layout.granularity)
    if isinstance(fmt, IntFormat) and not fmt.symmetric:
        qlim = _constant((float(fmt.qmin), float(fmt.qmax)), torch.float32, dev)
        scale, zero_point = ASYMMETRIC_SCALE(lo, hi, qlim, pow2, path=path)
        return QuantParams(layout.scale_from4(scale), layout.scale_from4(zero_point.to(torch.int32)), one,
                           layout.granularity)
    top = _constant(float(fmt.qmax) if isinstance(fmt, IntFormat) else fmt.max, torch.float32, dev)
    scale = SYMMETRIC_SCALE(lo, hi, top, pow2, path=path)
    return QuantParams(layout.scale_from4(scale), zeros, one, layout.granularity)


def compute_qparams(x: torch.Tensor, fmt: str | NumberFormat, granularity: Granularity | None = None, *,
                    amax=None, min_val=None, max_val=None, scale_kind: ScaleKind = "fp32",
                    path: KernelPath = "auto", mx_rule: str = "floor") -> QuantParams:
    """Scale and zero point for `x` in `fmt` at `granularity` (None: PerTensor(), or the block
    format's PerBlock(block_size, -1)).

    Statistics come from `x` unless given: `amax` (largest magnitude; symmetric integers and
    minifloats; NVFP4: the per-tensor amax) or `min_val`/`max_val` (required for asymmetric
    integers; elsewhere amax = max(-min_val, max_val)). Each is a number, a tensor of the scale
    shape, or one entry per group (e.g. a (C,) vector for PerChannel).

    mx_rule: the OCP MX shared-scale rule, one of `MX_SCALE_RULES` (formats/blocks.py): "floor"
    (the spec, the default), "ceil", "even" or "rceil". Other formats accept only "floor"."""
    fmt = get_format(fmt)
    granularity = resolve_granularity(fmt, granularity)
    x = as_float32(x)
    layout = GroupLayout.of(x.shape, granularity)
    return compute_qparams_arranged(layout.arrange(x), layout, fmt, amax=amax, min_val=min_val,
                                    max_val=max_val, scale_kind=scale_kind, path=path, mx_rule=mx_rule)
