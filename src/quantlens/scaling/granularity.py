"""Granularity: which elements share one scale, and the tensor layout the kernels see.

Every granularity maps a tensor onto a canonical 4-D view (P, G, L, Q) whose scale has shape
(P or 1, G, 1, Q or 1); the user-facing scale keeps the tensor's rank (see each class).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from quantlens.errors import ConfigError
from quantlens.formats.types import BlockFormat, NumberFormat


@dataclass(frozen=True)
class PerTensor:
    """One scale for the whole tensor.

    Scale shape: all ones, same rank: weight (O, I, kH, kW) -> scale (1, 1, 1, 1).
    """


@dataclass(frozen=True)
class PerChannel:
    """One scale per index along `axis` (any axis, negative counts from the end).

    Scale shape: size kept on `axis`, 1 elsewhere: weight (O, I, kH, kW) with PerChannel(0) ->
    scale (O, 1, 1, 1); activation (N, C, H, W) with PerChannel(1) -> (1, C, 1, 1).
    """

    axis: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.axis, int) or isinstance(self.axis, bool):
            raise ConfigError(f"PerChannel: axis must be an integer, got {self.axis!r}")


@dataclass(frozen=True)
class PerBlock:
    """One scale per run of `size` consecutive elements along `axis`; the last block may be short.

    Scale shape: the tensor's shape with `axis` replaced by ceil(D / size): weight (O, I) with
    PerBlock(32, -1) -> scale (O, ceil(I / 32)); weight (O, I) with PerBlock(32, 0) ->
    (ceil(O / 32), I). Block b covers elements [b * size, (b + 1) * size) along the axis.
    """

    size: int = 32
    axis: int = -1

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size <= 0:
            raise ConfigError(f"PerBlock: size must be a positive integer, got {self.size!r}")
        if not isinstance(self.axis, int) or isinstance(self.axis, bool):
            raise ConfigError(f"PerBlock: axis must be an integer, got {self.axis!r}")


Granularity = PerTensor | PerChannel | PerBlock


def resolve_granularity(fmt: NumberFormat, granularity: Granularity | None) -> Granularity:
    """None -> the format's natural granularity: PerTensor(), or PerBlock(block_size, -1) for
    block formats (which accept only PerBlock)."""
    if granularity is None:
        return PerBlock(fmt.block_size, -1) if isinstance(fmt, BlockFormat) else PerTensor()
    if not isinstance(granularity, (PerTensor, PerChannel, PerBlock)):
        raise ConfigError(f"granularity must be PerTensor(), PerChannel(axis) or PerBlock(size, axis), "
                          f"got {granularity!r}")
    if isinstance(fmt, BlockFormat) and not isinstance(granularity, PerBlock):
        raise ConfigError(f"{fmt.name} is a block format: use PerBlock({fmt.block_size}, axis), not {granularity!r}")
    return granularity


def _normalize_axis(axis: int, ndim: int, what: Granularity) -> int:
    if not -ndim <= axis < ndim:
        raise ConfigError(f"{what!r}: axis {axis} is out of range for a {ndim}-D tensor")
    return axis % ndim


@dataclass(frozen=True)
class GroupLayout:
    """How a tensor of `shape` is viewed as (P, G, L, Q) for one granularity.

    Groups (one scale each) are indexed by (p, g, q) for blocks, by g alone for channels and
    tensors: `reduce_dims` are the dims a group's statistics reduce over.
    """

    shape: tuple[int, ...]
    granularity: Granularity
    axis: int  # normalized; 0 for PerTensor
    p: int
    g: int
    l: int  # noqa: E741 - the block length / reduced extent in the (P, G, L, Q) picture
    q: int
    padded: int  # extent along `axis` after padding to whole blocks (PerBlock), else unchanged

    @staticmethod
    def of(shape: torch.Size | tuple[int, ...], granularity: Granularity) -> GroupLayout:
        shape = tuple(int(s) for s in shape)
        n = math.prod(shape)
        if isinstance(granularity, PerTensor):
            return GroupLayout(shape, granularity, 0, 1, 1, n, 1, shape[0] if shape else 1)
        if not shape:
            raise ConfigError(f"{granularity!r} needs a tensor with at least one dimension, got a 0-D tensor")
        axis = _normalize_axis(granularity.axis, len(shape), granularity)
        pre, d, post = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])
        if isinstance(granularity, PerChannel):
            return GroupLayout(shape, granularity, axis, pre, d, 1, post, d)
        blocks = -(-d // granularity.size)
        if blocks == 1:  # one (possibly short) block spans the axis: no padding copy is needed
            return GroupLayout(shape, granularity, axis, pre, 1, d, post, d)
        return GroupLayout(shape, granularity, axis, pre, blocks, granularity.size, post, blocks * granularity.size)

    @property
    def scale_shape(self) -> tuple[int, ...]:
        """The user-facing scale shape (same rank as the tensor; see the granularity's docstring)."""
        if isinstance(self.granularity, PerTensor):
            return (1,) * len(self.shape)
        out = [1] * len(self.shape) if isinstance(self.granularity, PerChannel) else list(self.shape)
        out[self.axis] = self.g
        return tuple(out)

    @property
    def scale4_shape(self) -> tuple[int, int, int, int]:
        """Scale shape in the (P, G, L, Q) view."""
        if isinstance(self.granularity, PerBlock):
            return (self.p, self.g, 1, self.q)
        return (1, self.g, 1, 1)

    @property
    def reduce_dims(self) -> tuple[int, ...]:
        if isinstance(self.granularity, PerBlock):
            return (2,)
        if isinstance(self.granularity, PerChannel):
            return (0, 2, 3)
        return (0, 1, 2, 3)

    @property
    def ragged(self) -> bool:
        return bool(self.shape) and self.padded != self.shape[self.axis]

    def arrange(self, x: torch.Tensor) -> torch.Tensor:
        """x (shape) -> (P, G, L, Q); a ragged last block is padded with zeros (a copy)."""
        if self.ragged:
            padded_shape = list(self.shape)
            padded_shape[self.axis] = self.padded
            xp = x.new_zeros(padded_shape)
            xp.narrow(self.axis, 0, self.shape[self.axis]).copy_(x)
            x = xp
        return x.reshape(self.p, self.g, self.l, self.q)

    def restore(self, y4: torch.Tensor) -> torch.Tensor:
        """(P, G, L, Q) -> the original shape, padding dropped (always contiguous)."""
        if not self.ragged:
            return y4.reshape(self.shape)
        padded_shape = list(self.shape)
        padded_shape[self.axis] = self.padded
        return y4.reshape(padded_shape).narrow(self.axis, 0, self.shape[self.axis]).contiguous()

    def scale_to4(self, scale: torch.Tensor) -> torch.Tensor:
        """User-facing scale -> (P|1, G, 1, Q|1)."""
        return scale.reshape(self.scale4_shape)

    def scale_from4(self, scale4: torch.Tensor) -> torch.Tensor:
        return scale4.reshape(self.scale_shape)
