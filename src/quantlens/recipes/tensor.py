"""One tensor role's recipe: number format, mode (granularity), block size, observer, scale kind, rounding.

A quantization entry holds one recipe per role (`weights`, `inputs`, `outputs`, `norm`); an
override holds patches that change some fields of them. The defaults that depend on the format
are derived here, in one place, so an entry, an override and a sweep follow the same rule:

- `format`: the entry's `format`;
- `mode`: the role's default (weights `channel`, inputs `tensor`, outputs and norm `none`), except
  that a block format (MX, NVFP4) brings `block` to a role that is on;
- `block_size`: a block format's own block size, else 32.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, SerializerFunctionWrapHandler, field_validator, model_serializer, model_validator

from quantlens.errors import QuantlensError
from quantlens.formats import BlockFormat, get_format
from quantlens.observers import OBSERVERS
from quantlens.recipes.base import Block

Mode = Literal["none", "tensor", "channel", "block"]
NormMode = Literal["none", "tensor", "channel"]
# 'dynamic' measures ranges on every batch; any other name is a registered observer
# (quantlens.observers.OBSERVERS: max, moving_average, percentile, entropy, mse) that calibrates
# static ranges over the calibration samples.
DYNAMIC = "dynamic"
MxRule = Literal["floor", "ceil", "even", "rceil"]
ObserverOptions = dict[str, int | float | str]
ScaleKind = Literal["fp32", "pow2"]
Rounding = Literal["nearest_even", "stochastic"]

DEFAULT_BLOCK_SIZE = 32
ROLE_MODES: dict[str, str] = {"weights": "channel", "inputs": "tensor", "outputs": "none", "norm": "none"}


def check_format(name: str) -> str:
    """`name` if it is a registered number format; ValueError (which pydantic names with the field) if not."""
    try:
        get_format(name)
    except QuantlensError as exc:
        raise ValueError(str(exc)) from None
    return name


def check_observer(name: str) -> str:
    """`name` if it is 'dynamic' or a registered observer; ValueError with close matches if not."""
    if name != DYNAMIC and name not in OBSERVERS:
        raise ValueError(OBSERVERS.unknown_message(name).replace(" (known: ", f" (known: {DYNAMIC}, "))
    return name


def check_observer_options(observer: str, options: Mapping[str, Any], format_name: str, mode: str) -> None:
    """ValueError unless `observer` accepts `options` for `format_name` in `mode` (it is built once to check)."""
    if observer == DYNAMIC:
        if options:
            raise ValueError(f"observer 'dynamic' takes no observer_options (got {', '.join(options)})")
        return
    try:
        OBSERVERS.get(observer)(get_format(format_name), 0 if mode == "channel" else None, **dict(options))
    except TypeError as exc:  # an option the observer's constructor does not have
        raise ValueError(f"observer {observer!r}: {exc}") from None
    except QuantlensError as exc:
        raise ValueError(f"observer {observer!r}: {exc}") from None


def block_format(name: Any) -> BlockFormat | None:
    """The block format called `name`; None for other formats and for values that are no format name
    (those are reported by the field's own validation, with the field's name)."""
    if not isinstance(name, str):
        return None
    try:
        fmt = get_format(name)
    except QuantlensError:
        return None
    return fmt if isinstance(fmt, BlockFormat) else None


class TensorRecipe(Block):
    """How one tensor role of the selected layers is fake-quantized."""

    # Whether mode 'block' exists for this role (normalisation parameters are scaled per tensor or channel).
    takes_blocks: ClassVar[bool] = True

    format: str = Field("int8", description="number format (`quantlens formats`); default: the entry's format")
    mode: Mode = Field("tensor", description="'none' (float), 'tensor', 'channel' or 'block' (blocks along the "
                                             "reduction axis: a weight's fan-in, an activation's channels)")
    block_size: int = Field(DEFAULT_BLOCK_SIZE, gt=0, description="elements per block in mode 'block' (a row's "
                                                                  "last block may be short); block formats fix it")
    observer: str = Field("max", description="how ranges are found: a calibration observer ('max', "
                                             "'moving_average', 'percentile', 'entropy', 'mse'; `quantlens "
                                             "observers`) over the calibration samples, or 'dynamic' (inputs/"
                                             "outputs measured on each batch); weights use their own values")
    observer_options: ObserverOptions = Field(default_factory=dict, description="the observer's options, e.g. "
                                              "{percentile: 99.99}, {bins: 2048}, {momentum: 0.9}")
    mx_rule: MxRule = Field("floor", description="MX shared-scale rule: 'floor' (OCP MX v1.0), 'even' (round the "
                                                 "block maximum to the element's mantissa first), 'rceil' or 'ceil' "
                                                 "(round the scale up: no block maximum is clipped)")
    scale: ScaleKind = Field("fp32", description="scales kept in FP32 or rounded up to powers of two")
    rounding: Rounding = "nearest_even"

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        return check_format(value)

    @field_validator("observer")
    @classmethod
    def _known_observer(cls, value: str) -> str:
        return check_observer(value)

    @model_validator(mode="after")
    def _observer_takes_options(self) -> TensorRecipe:
        if self.mode not in ("none", "block"):  # block scales follow each block's own values
            check_observer_options(self.observer, self.observer_options, self.format, self.mode)
        if self.mx_rule != "floor" and (fmt := block_format(self.format)) is not None and fmt.rule != "ocp_mx":
            raise ValueError(f"mx_rule applies to OCP MX formats; {fmt.name} has its own scale rule")
        return self

    @model_validator(mode="after")
    def _block_format_fits(self) -> TensorRecipe:
        fmt = block_format(self.format)
        if fmt is None or self.mode == "none":
            return self
        if not self.takes_blocks:
            raise ValueError(f"{fmt.name} is a block format; normalisation parameters take 'tensor' or 'channel' "
                             f"scaling: choose another format, or mode 'none'")
        if self.mode != "block":
            raise ValueError(f"{fmt.name} is a block format (blocks of {fmt.block_size}); set mode to 'block' or "
                             f"'none', not '{self.mode}'")
        if self.block_size != fmt.block_size:
            raise ValueError(f"{fmt.name} fixes blocks of {fmt.block_size}; block_size {self.block_size} "
                             f"contradicts it")
        return self

    @classmethod
    def role_base(cls, role: str, entry_format: Any) -> dict[str, Any]:
        """The values of a role no field of which is written: the entry's format, the role's mode."""
        defaults = {name: field.get_default(call_default_factory=True) for name, field in cls.model_fields.items()}
        return {**defaults, "format": entry_format, "mode": ROLE_MODES[role]}

    @classmethod
    def derive(cls, base: Mapping[str, Any], written: Mapping[str, Any]) -> dict[str, Any]:
        """The recipe's values: `written` over `base`, plus what a block format brings where `written`
        is silent (block mode for a role that is on, the format's block size).

        base: every field (a role's defaults, or an entry's resolved recipe an override changes);
        written: the fields given (a config's mapping, or an override's patch)."""
        values = {**base, **written}
        fmt = block_format(values.get("format"))
        if fmt is not None and cls.takes_blocks:
            if "mode" not in written and values.get("mode") != "none":
                values["mode"] = "block"
            if "block_size" not in written:
                values["block_size"] = fmt.block_size
        return values

    def implied_omitted(self, base: Mapping[str, Any]) -> dict[str, Any]:
        """This recipe's values less those `derive(base, ...)` would give anyway: what a config must
        write to get this recipe back. A sweep edits these, so values left to the format follow it."""
        values = self.model_dump()
        implied = self.derive(base, {"format": self.format})
        implied["format"] = base["format"]
        return {k: v for k, v in values.items() if implied.get(k) != v}


class NormRecipe(TensorRecipe):
    """Normalisation parameters and BatchNorm running statistics: per tensor or per channel."""

    takes_blocks: ClassVar[bool] = False
    mode: NormMode = Field("none", description="'none' (float), 'tensor' or 'channel'")


class RecipePatch(Block):
    """The fields of a tensor recipe an override changes; a field left out keeps the entry's value."""

    format: str | None = None
    mode: Mode | None = None
    block_size: int | None = Field(None, gt=0)
    observer: str | None = None
    observer_options: ObserverOptions | None = None
    mx_rule: MxRule | None = None
    scale: ScaleKind | None = None
    rounding: Rounding | None = None

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        return None if value is None else check_format(value)

    @field_validator("observer")
    @classmethod
    def _known_observer(cls, value: str | None) -> str | None:
        return None if value is None else check_observer(value)

    def given(self) -> dict[str, Any]:
        """The fields this patch sets."""
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @model_serializer(mode="wrap")
    def _only_given(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Written out as given: `{format: int4}`, not six keys of which five are null.
        return {k: v for k, v in handler(self).items() if v is not None}


class NormPatch(RecipePatch):
    mode: NormMode | None = None


RECIPE_CLASSES: dict[str, type[TensorRecipe]] = {"weights": TensorRecipe, "inputs": TensorRecipe,
                                                 "outputs": TensorRecipe, "norm": NormRecipe}
