"""Number formats as value objects: integers, minifloats and block-scaled formats.

A format holds bit-fields and semantics only; the maths that rounds onto its grid lives in
`integer.py`, `minifloat.py` and `blocks.py`, and the bit patterns in `bits.py`. Build formats
with the factories in `registry.py` (`int_format`, `float_format`, ...) rather than by hand: the
factories pick the conventional defaults (IEEE bias, names).

Every grid value of every format is an exact float32, so simulation happens in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from quantlens.errors import ConfigError


class Specials(str, Enum):
    """Which bit patterns of a minifloat are not finite numbers."""

    IEEE = "ieee"
    """Top exponent field reserved: mantissa 0 is +-Inf, any other mantissa a NaN (E5M2, fp16, bf16)."""
    FINITE_NAN = "fn"
    """Only the all-ones pattern (S.1..1.1..1) is NaN; no Inf (OCP E4M3 "fn", E8M0)."""
    FINITE = "finite"
    """Every pattern is a finite number; no Inf, no NaN (OCP FP6 E3M2/E2M3, FP4 E2M1)."""


@dataclass(frozen=True)
class IntFormat:
    """A `bits`-bit integer grid [qmin, qmax]; the real value is (q - zero_point) * scale.

    `symmetric` decides how a scale is fitted (zero_point 0 and scale = amax / qmax, or an
    integer zero_point from the min/max range); `narrow_range` drops the most negative code
    (int8: [-127, 127]; unsigned: [1, 2^bits - 1]).
    """

    name: str
    bits: int
    signed: bool = True
    narrow_range: bool = False
    symmetric: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or not 2 <= self.bits <= 16:
            raise ConfigError(f"integer format {self.name!r}: bits must be an integer in 2..16, got {self.bits!r}")

    @property
    def qmin(self) -> int:
        if self.signed:
            return -(1 << (self.bits - 1)) + (1 if self.narrow_range else 0)
        return 1 if self.narrow_range else 0

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def max(self) -> float:
        """Largest code (as a float)."""
        return float(self.qmax)

    @property
    def min_normal(self) -> float:
        """Smallest positive code: integers have no subnormals, so this is 1."""
        return 1.0

    @property
    def min_subnormal(self) -> float:
        return 1.0

    def grid(self):
        """Every code qmin..qmax as a float32 tensor, ascending."""
        from quantlens.formats.bits import grid

        return grid(self)


@dataclass(frozen=True)
class FloatFormat:
    """A minifloat: [sign] exponent mantissa, value = (-1)^s * 1.m * 2^(E - bias).

    With `has_zero` (the IEEE layout) exponent field 0 holds zero and the subnormals
    0.m * 2^(1 - bias). Without it (E8M0) exponent field 0 is an ordinary binade: the format
    has no zero and no subnormals. `specials` says which patterns are Inf/NaN.
    """

    name: str
    exp_bits: int
    man_bits: int
    bias: int
    signed: bool = True
    specials: Specials = Specials.IEEE
    has_zero: bool = True
    # derived constants, filled in __post_init__ (kept as fields so they show in repr/eq)
    emin: int = field(init=False)
    emax: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "specials", Specials(self.specials))
        if not isinstance(self.exp_bits, int) or not 1 <= self.exp_bits <= 8:
            raise ConfigError(f"float format {self.name!r}: exp_bits must be in 1..8, got {self.exp_bits!r}")
        if not isinstance(self.man_bits, int) or not 0 <= self.man_bits <= 23:
            raise ConfigError(f"float format {self.name!r}: man_bits must be in 0..23, got {self.man_bits!r}")
        top_field = (1 << self.exp_bits) - 1
        emin = 1 - self.bias if self.has_zero else -self.bias
        emax = top_field - self.bias
        if self.specials is Specials.IEEE:
            emax -= 1  # the top binade is Inf/NaN
        elif self.specials is Specials.FINITE_NAN and self.man_bits == 0:
            emax -= 1  # the NaN pattern is the whole top binade
        object.__setattr__(self, "emin", emin)
        object.__setattr__(self, "emax", emax)
        if emax < emin:
            raise ConfigError(f"float format {self.name!r}: no finite normal binade (emin {emin}, emax {emax})")
        # float32 must hold every grid value exactly and every f32 subnormal must fall in the
        # format's constant-step region (see minifloat.py): emin >= -127, steps >= 2^-149.
        if emax > 127 or emin < -127 or emin - self.man_bits < -149:
            raise ConfigError(
                f"float format {self.name!r}: grid does not fit float32 (emin {emin}, emax {emax}, "
                f"man_bits {self.man_bits}; need emax <= 127, emin >= -127, emin - man_bits >= -149)"
            )

    @property
    def bits(self) -> int:
        return int(self.signed) + self.exp_bits + self.man_bits

    @property
    def max(self) -> float:
        """Largest finite value."""
        top_mantissa = (1 << self.man_bits) - 1
        if self.specials is Specials.FINITE_NAN and self.man_bits > 0:
            top_mantissa -= 1  # S.1..1.1..1 is NaN, so the top binade stops one step short
        return math.ldexp((1 << self.man_bits) + top_mantissa, self.emax - self.man_bits)

    @property
    def min_normal(self) -> float:
        """Smallest positive normal value 2^emin (the smallest value at all when there is no zero)."""
        return math.ldexp(1.0, self.emin)

    @property
    def min_subnormal(self) -> float:
        """Smallest positive value: 2^(emin - man_bits), or `min_normal` when there are no subnormals."""
        if self.has_zero and self.man_bits > 0:
            return math.ldexp(1.0, self.emin - self.man_bits)
        return self.min_normal

    @property
    def lowest(self) -> float:
        """Most negative finite value (for unsigned formats the smallest value: 0, or min_normal)."""
        if self.signed:
            return -self.max
        return 0.0 if self.has_zero else self.min_normal

    @property
    def has_inf(self) -> bool:
        return self.specials is Specials.IEEE

    @property
    def has_nan(self) -> bool:
        # IEEE with no mantissa bits has room for Inf only
        return self.specials is Specials.FINITE_NAN or (self.specials is Specials.IEEE and self.man_bits > 0)

    def grid(self):
        """Every finite value as a float32 tensor, ascending, zero once."""
        from quantlens.formats.bits import grid

        return grid(self)


ElementFormat = IntFormat | FloatFormat
BlockRule = Literal["ocp_mx", "nvfp4"]


@dataclass(frozen=True)
class BlockFormat:
    """Elements in blocks of `block_size` along one axis, each block with its own scale.

    `rule="ocp_mx"`: OCP Microscaling v1.0, scale = 2^(floor(log2 amax_block) - element_emax)
    stored as E8M0. `rule="nvfp4"`: an E4M3 scale per block times one FP32 per-tensor scale.
    Integer elements (MXINT8) are fixed point 1.(bits-2): code k means k * 2^-(bits-2).
    """

    name: str
    element: ElementFormat
    block_size: int
    scale_format: FloatFormat
    rule: BlockRule

    def __post_init__(self) -> None:
        if not isinstance(self.block_size, int) or self.block_size <= 0:
            raise ConfigError(f"block format {self.name!r}: block_size must be a positive integer, "
                              f"got {self.block_size!r}")
        if self.rule not in ("ocp_mx", "nvfp4"):
            raise ConfigError(f"block format {self.name!r}: unknown scale rule {self.rule!r} (known: ocp_mx, nvfp4)")

    @property
    def element_emax(self) -> int:
        """Exponent of the element format's largest normal (0 for fixed-point integer elements)."""
        return self.element.emax if isinstance(self.element, FloatFormat) else 0

    @property
    def element_step_log2(self) -> int:
        """Integer elements: log2 of the value of code 1 (MXINT8: -6). Float elements: 0."""
        return -(self.element.bits - 2) if isinstance(self.element, IntFormat) else 0

    @property
    def bits(self) -> int:
        """Bits per element (the per-block scale comes on top)."""
        return self.element.bits

    @property
    def max(self) -> float:
        """Largest element value (in element units, before the block scale)."""
        if isinstance(self.element, IntFormat):
            return math.ldexp(self.element.qmax, self.element_step_log2)
        return self.element.max

    def grid(self):
        """Element values (before the block scale), float32, ascending."""
        from quantlens.formats.bits import grid

        return grid(self)


NumberFormat = IntFormat | FloatFormat | BlockFormat
