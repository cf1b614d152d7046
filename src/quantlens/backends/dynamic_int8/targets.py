"""The runtimes dynamic INT8 deploys to, and the quantlens recipe that simulates each one exactly.

Every target quantizes a Linear layer's input on every call, from that call's own range, and reads
quantlens's stored int8 weight codes and scales. What differs is the activation format, the group
that shares one scale, and how the input is divided by the scale:

  onnxruntime  DynamicQuantizeLinear (fused into DynamicQuantizeMatMul): uint8, asymmetric, one scale
               for the whole input tensor (every sample and token of the batch together):
               lo = min(x, 0), hi = max(x, 0), scale = (hi - lo) / 255, zp = rint(-lo / scale),
               q = clamp(rint(x / scale) + zp, 0, 255) with a true float32 division.
               quantlens: inputs {format: uint8, mode: tensor, observer: dynamic} with
               `simulation: deployment` (its integer kernels then divide, as ONNX Runtime does).
  torchao      Int8DynamicActivationInt8WeightConfig(act_mapping_type=ASYMMETRIC, granularity=PerRow()):
               int8, asymmetric, one scale per row (per token: every leading index of (..., K)):
               scale = (hi - lo) / 255, zp = -128 - rint(lo / scale), q = clamp(rint(x * (1 / scale)) + zp)
               with the float32 reciprocal. quantlens: inputs {format: int8_asym, mode: block,
               block_size >= the widest Linear input, observer: dynamic}: one block spans a whole row.

torchao's default SYMMETRIC activations use scale = amax / 127.5 (codes -128..127); no quantlens integer
format has that divisor, so the deployment uses ASYMMETRIC, whose formula is quantlens's int8_asym.
Consequence of per-tensor ranges on ONNX Runtime: a sample's result depends on the other samples of its
batch; the simulation reproduces that only when it sees the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from quantlens.backends.base import BackendError

Granularity = Literal["tensor", "row"]


@dataclass(frozen=True)
class DynamicTarget:
    """One runtime's dynamic activation quantization, as quantlens input-recipe fields."""

    name: str
    runtime: str  # for messages: "ONNX Runtime (DynamicQuantizeMatMul)"
    activation_format: str  # quantlens format name of the activation codes
    granularity: Granularity  # one scale per input tensor, or per row (token)
    divide: bool  # x / scale as a true division (True) or x * float32(1 / scale) (False)
    formula: str  # one line, for reports

    def inputs_recipe(self, row_length: int) -> dict[str, Any]:
        """The `inputs` recipe fields that simulate this target; `row_length`: the widest Linear input
        (a per-row block must span it)."""
        if self.granularity == "tensor":
            return {"format": self.activation_format, "mode": "tensor", "observer": "dynamic"}
        return {"format": self.activation_format, "mode": "block", "block_size": int(row_length),
                "observer": "dynamic"}

    @property
    def simulation(self) -> Literal["fake_quant", "deployment"]:
        """The QuantizationConfig `simulation` value whose integer kernels divide the way this target does."""
        return "deployment" if self.divide else "fake_quant"

    def describe_inputs(self) -> str:
        where = "per tensor" if self.granularity == "tensor" else "per row (token)"
        return f"{self.activation_format} {where}, dynamic"


ONNXRUNTIME = DynamicTarget(
    "onnxruntime", "ONNX Runtime (DynamicQuantizeMatMul)", "uint8", "tensor", True,
    "uint8 asymmetric per input tensor: scale = (max(x,0) - min(x,0)) / 255, q = clamp(rint(x / scale) + zp)")
TORCHAO = DynamicTarget(
    "torchao", "torchao Int8DynamicActivationInt8WeightConfig (ASYMMETRIC, PerRow)", "int8_asym", "row", False,
    "int8 asymmetric per row: scale = (max(row,0) - min(row,0)) / 255, q = clamp(rint(x * (1 / scale)) + zp)")

TARGETS: dict[str, DynamicTarget] = {t.name: t for t in (ONNXRUNTIME, TORCHAO)}


def get_target(target: str | DynamicTarget) -> DynamicTarget:
    """The target called `target` (or `target` itself); BackendError naming the known ones."""
    if isinstance(target, DynamicTarget):
        return target
    if target not in TARGETS:
        raise BackendError(f"unknown dynamic INT8 target {target!r} (known: {', '.join(TARGETS)})")
    return TARGETS[target]
