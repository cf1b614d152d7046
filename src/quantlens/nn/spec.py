"""What to do to each tensor of one layer: the plain per-layer plan the module wrappers execute.

Recipes (the validated user configs) translate into these; the wrappers never see a config file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from quantlens.formats import BlockFormat, NumberFormat, get_format
from quantlens.scaling import Granularity, PerBlock, PerChannel, PerTensor

Mode = Literal["tensor", "channel", "block"]


@dataclass(frozen=True)
class TensorSpec:
    """How one tensor role is fake-quantized.

    static: inputs/outputs use ranges fixed by calibration (True) or measured on every batch
    (False). Block scales are always measured per call (they follow the data block by block);
    with static=True, NVFP4 keeps its per-tensor FP32 scale from calibration.
    """

    format: NumberFormat
    mode: Mode = "tensor"
    chunk_size: int = 32
    scale_kind: Literal["fp32", "pow2"] = "fp32"
    static: bool = True
    rounding: Literal["nearest_even", "stochastic"] = "nearest_even"
    saturate: bool = True  # False: overflow becomes Inf (E5M2, FP16) or NaN (E4M3) where the format has them
    observer: str = "max"  # a registered observer (quantlens.observers.OBSERVERS): statistics -> range
    observer_options: tuple[tuple[str, Any], ...] = ()  # that observer's keyword options: (("percentile", 99.99),)
    mx_rule: str = "floor"  # OCP MX shared-scale rule: 'floor' (the spec), 'ceil', 'even' or 'rceil'
    divide: bool = False  # True: x / scale as a true division (what ONNX Runtime's QuantizeLinear does)

    def __post_init__(self) -> None:
        object.__setattr__(self, "format", get_format(self.format))
        if isinstance(self.format, BlockFormat):
            if self.mode != "block":
                raise ValueError(f"{self.format.name} is a block format: mode must be 'block', got {self.mode!r}")
            object.__setattr__(self, "chunk_size", self.format.block_size)

    def granularity(self, axis: int) -> Granularity:
        if self.mode == "tensor":
            return PerTensor()
        if self.mode == "channel":
            return PerChannel(axis)
        return PerBlock(self.chunk_size, axis)

    def options(self) -> dict[str, Any]:
        return dict(self.observer_options)

    def describe(self) -> str:
        return f"{self.format.name}/{self.mode}" + (f"{self.chunk_size}" if self.mode == "block" else "")


@dataclass(frozen=True)
class LayerPlan:
    """Per role: a TensorSpec, or None to leave that role in float."""

    weights: TensorSpec | None = None
    inputs: TensorSpec | None = None
    outputs: TensorSpec | None = None
    norm: TensorSpec | None = None

    @property
    def active(self) -> bool:
        return any(s is not None for s in (self.weights, self.inputs, self.outputs, self.norm))
