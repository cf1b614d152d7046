"""The simulated-quantization recipe: which tensors of which layers get which number format.

Four tensor roles are set separately: weights (`weight_*`), layer inputs (`input_*`), layer
outputs (`act_*`) and normalisation parameters with BatchNorm running statistics (`bn_*`). Each
has a format (default: `format`), a mode (`none`, `tensor`, `channel`, `block`) and a block size
(`*_chunk_size`); `input_ops: matmul` limits input quantization to convolutions, linear layers
and matmuls. Layer selection: `include`/`exclude` globs on layer names, `quantize_first_layer`
/ `quantize_last_layer`, and `overrides` that change any setting for layers matched by name glob
or module type (the last matching override wins).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from quantlens.errors import QuantlensError
from quantlens.formats import BlockFormat, get_format
from quantlens.recipes.base import Block

Mode = Literal["none", "tensor", "channel", "block"]
ROLES = ("weight", "input", "act", "bn")


def _check_format(name: str) -> str:
    try:
        get_format(name)
    except QuantlensError as exc:  # becomes a pydantic error that names the field
        raise ValueError(str(exc)) from None
    return name


class Override(Block):
    """Settings for the layers whose name matches `match` (a glob) and/or whose type is `type`."""

    match: str | None = Field(None, description="glob on the layer name, e.g. 'layer3.*' or '*.attn.*'")
    type: str | None = Field(None, description="module class name, e.g. 'Linear', 'MatMul', 'Softmax'")
    skip: bool = Field(False, description="leave the matched layers in float")
    weight_format: str | None = None
    weight_mode: Mode | None = None
    weight_chunk_size: int | None = Field(None, gt=0)
    input_format: str | None = None
    input_mode: Mode | None = None
    input_chunk_size: int | None = Field(None, gt=0)
    act_format: str | None = None
    act_mode: Mode | None = None
    act_chunk_size: int | None = Field(None, gt=0)

    @field_validator("weight_format", "input_format", "act_format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        return None if value is None else _check_format(value)

    @model_validator(mode="after")
    def _selects_something(self) -> Override:
        if self.match is None and self.type is None:
            raise ValueError("an override needs 'match' (a name glob) or 'type' (a module class name)")
        return self

    def settings(self) -> dict[str, Any]:
        """The settings this override changes (the fields it was given), selection keys excluded."""
        return {k: v for k, v in self.model_dump(exclude={"match", "type", "skip"}).items() if v is not None}


class QuantizationConfig(Block):
    version: Literal[1] = 1
    name: str = Field("", description="label in tables; default: derived from the settings")
    format: str = Field("int8", description="default format of every role")
    weight_format: str = Field(None, description="default: format")
    weight_mode: Mode = "channel"
    weight_chunk_size: int = Field(32, gt=0)
    input_format: str = Field(None, description="default: format")
    input_mode: Mode = "tensor"
    input_chunk_size: int = Field(32, gt=0)
    input_ops: Literal["all", "matmul"] = Field(
        "all", description="whose inputs are quantized: 'all' (every layer type that quantizes its inputs by "
                           "default, residual adds, pools and softmax included) or 'matmul' (only convolutions, "
                           "linear layers and matmuls: the operands FP8 and MX/NVFP4 hardware multiplies in low "
                           "precision, while adds, pools and softmax run in higher precision)")
    act_format: str = Field(None, description="default: format")
    act_mode: Mode = "none"
    act_chunk_size: int = Field(32, gt=0)
    bn_format: str = Field(None, description="default: format")
    bn_mode: Literal["none", "tensor", "channel"] = Field(
        "none", description="normalisation layers' parameters and BatchNorm running statistics")
    scale: Literal["fp32", "pow2"] = Field("fp32", description="scales kept in FP32 or rounded up to powers of two")
    calibration: Literal["max", "dynamic"] = Field(
        "max", description="input/activation ranges: 'max' over calibration samples (static), or from each batch")
    calibration_samples: int = Field(512, gt=0)
    rounding: Literal["nearest_even", "stochastic"] = "nearest_even"
    overflow: Literal["saturate", "inf_nan"] = Field(
        "saturate", description="values beyond the largest finite value clamp to it, or become Inf/NaN where the "
                                "format has them (integers and formats without Inf/NaN always saturate)")
    quantize_first_layer: bool = True
    quantize_last_layer: bool = True
    include: tuple[str, ...] = Field((), description="globs on layer names; empty: every supported layer")
    exclude: tuple[str, ...] = Field((), description="globs on layer names left in float")
    overrides: tuple[Override, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _role_defaults(cls, values: Any) -> Any:
        """Role formats default to `format`; a block format (MX, NVFP4) brings its own block mode and size."""
        if not isinstance(values, dict):
            return values
        default = values.get("format", "int8")
        values = {**{f"{role}_format": default for role in ROLES}, **values}
        for role in ("weight", "input", "act"):
            name = values[f"{role}_format"]
            if not isinstance(name, str):
                continue  # a type error, reported by the field's own validation
            try:
                fmt = get_format(name)
            except QuantlensError:
                continue  # reported by the field validator, with the field's name
            if isinstance(fmt, BlockFormat):
                mode = {f"{role}_mode": "block"} if role != "act" else {}  # outputs stay off unless asked
                values = {**mode, f"{role}_chunk_size": fmt.block_size, **values}
        return values

    @field_validator("format", "weight_format", "input_format", "act_format", "bn_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        return _check_format(value)

    @model_validator(mode="after")
    def _block_formats_need_block_mode(self) -> QuantizationConfig:
        for role in ("weight", "input", "act"):
            fmt = get_format(getattr(self, f"{role}_format"))
            mode = getattr(self, f"{role}_mode")
            if isinstance(fmt, BlockFormat) and mode not in ("none", "block"):
                raise ValueError(f"{role}_format {fmt.name} is a block format (blocks of {fmt.block_size}); "
                                 f"set {role}_mode to 'block' or 'none', not '{mode}'")
            chunk = getattr(self, f"{role}_chunk_size")
            if isinstance(fmt, BlockFormat) and mode == "block" and chunk != fmt.block_size:
                raise ValueError(f"{role}_format {fmt.name} fixes blocks of {fmt.block_size}; "
                                 f"{role}_chunk_size {chunk} contradicts it")
        if isinstance(get_format(self.bn_format), BlockFormat) and self.bn_mode != "none":
            raise ValueError(f"bn_format {self.bn_format} is a block format; normalisation parameters take "
                             f"'tensor' or 'channel' scaling")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        parts = []
        for role, short in (("weight", "w"), ("input", "in"), ("act", "out"), ("bn", "bn")):
            mode = getattr(self, f"{role}_mode")
            if mode == "none":
                continue
            fmt = getattr(self, f"{role}_format")
            chunk = f"{getattr(self, f'{role}_chunk_size')}" if mode == "block" and role != "bn" else ""
            parts.append(f"{short}:{fmt}/{mode}{chunk}")
        if self.input_ops == "matmul" and self.input_mode != "none":
            parts.append("in:matmul-only")
        return " ".join(parts) or "float"
