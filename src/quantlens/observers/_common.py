"""Helpers every observer shares: grouping a tensor into rows, validating options, the format."""

from __future__ import annotations

import math
from typing import Any

import torch

from quantlens.errors import ConfigError
from quantlens.formats.registry import get_format
from quantlens.formats.types import BlockFormat, IntFormat, NumberFormat


def group_rows(x: torch.Tensor, axis: int | None) -> torch.Tensor:
    """x (any shape) -> float32 (G, N): one row per group; G = 1 per tensor (axis None), else
    one row per index along `axis` (a copy only when the layout needs one)."""
    x = x.detach().to(torch.float32)
    if axis is None:
        return x.reshape(1, -1)
    return x.movedim(axis, 0).reshape(x.shape[axis], -1)


def reject_unknown(observer: str, unknown: dict[str, Any], known: tuple[str, ...]) -> None:
    """ConfigError naming the first option the observer does not have."""
    if unknown:
        name = next(iter(unknown))
        listed = ", ".join(known) if known else "none"
        raise ConfigError(f"observer {observer!r}: unknown option {name!r} (known: {listed})")


def number_option(observer: str, name: str, value: Any, *, low: float, high: float, low_open: bool = False,
                  high_open: bool = False, integer: bool = False) -> float | int:
    """`value` checked to be a (integer) number in the interval, else a one-line ConfigError."""
    lo_b, hi_b = "(" if low_open else "[", ")" if high_open else "]"
    kind = "an integer" if integer else "a number"
    wanted = f"{kind} in {lo_b}{low:g}, {high:g}{hi_b}"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not math.isfinite(float(value)):
        raise ConfigError(f"observer {observer!r}: option {name!r} must be {wanted}, got {value!r}")
    v = float(value)
    if v < low or v > high or (low_open and v == low) or (high_open and v == high):
        raise ConfigError(f"observer {observer!r}: option {name!r} must be {wanted}, got {value!r}")
    return int(value) if integer else v


def scalar_format(observer: str, fmt: str | NumberFormat | None) -> IntFormat | NumberFormat:
    """The format an observer fits its range to; searches on the format's grid need a scalar one."""
    if fmt is None:
        raise ConfigError(f"observer {observer!r} fits its range to the number format: give one")
    fmt = get_format(fmt)
    if isinstance(fmt, BlockFormat):
        raise ConfigError(f"observer {observer!r} searches a per-tensor or per-channel range on an integer or "
                          f"minifloat grid; {fmt.name} is a block format (its scales follow each block)")
    return fmt


def is_asymmetric(fmt: NumberFormat | None) -> bool:
    """An integer format with a fitted zero point: its range is (lo, hi), not +-amax."""
    return isinstance(fmt, IntFormat) and not fmt.symmetric


def nan_where_nonfinite(values: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """values, NaN in groups whose observed min or max is NaN or +-Inf (the data held NaN/Inf):
    the range then gives NaN scales, so the problem shows in the outputs instead of vanishing."""
    finite = torch.isfinite(lo) & torch.isfinite(hi)
    return torch.where(finite, values, torch.full_like(values, torch.nan))
