"""The interpreter's values and plan entries: a tensor with LPT's pending dequantization, a quantizer,
a dense layer's weights and an int8 primitive with the post-ops OpenVINO fused into it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from quantlens.backends.qdq.openvino_faithful.fake_quant import FqRange, _per_channel


@dataclass
class _Value:
    """A tensor as LPT sees it: `value` with a pending dequantization, real = (value - sub) * mul
    (sub/mul None when absent; scalars or (C,) arrays). `q` names the Q node when value holds its codes."""

    value: torch.Tensor
    sub: np.ndarray | None = None
    mul: np.ndarray | None = None
    q: str | None = None

    def real(self) -> torch.Tensor:
        v = self.value.float()
        if self.sub is not None:
            v = v - _per_channel(self.sub, v.dim())
        if self.mul is not None:
            v = v * _per_channel(self.mul, v.dim())
        return v


@dataclass(frozen=True)
class _Quantizer:
    name: str  # the QuantizeLinear node
    scale: np.ndarray
    zero_point: np.ndarray
    fq: FqRange


@dataclass
class _Dense:
    """Conv or Gemm weights as stored: int8 codes, per-output-channel scale; float32 bias (or None)."""

    codes: torch.Tensor
    scale: np.ndarray
    bias: torch.Tensor | None
    conv: dict | None  # stride, pads, dilation for a conv; None for a fully connected layer


@dataclass
class _Fused:
    """An int8 primitive and the post-ops OpenVINO fused into it (see the package docstring)."""

    node: object
    input: str
    dense: _Dense
    relu: bool = False
    out_q: _Quantizer | None = None  # conv -> [ReLU] -> Q
    residual: tuple | None = None  # (Q1, other input tensor, relu after the add, Q2 or None)
    output: str = ""
