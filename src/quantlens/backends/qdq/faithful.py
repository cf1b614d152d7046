"""Deployment-faithful simulation: the calibrated fake-quant model computing what ONNX Runtime computes.

quantlens's fake quantization multiplies by the float32 reciprocal of the scale and keeps every
layer in float; ONNX Runtime divides, and runs fused layers on integers. This module rebuilds
the model layer by layer after what the runtime really did (`inspect.ort_fusion`):

  every quantizer           QuantizeLinear: clamp(rint(x / scale) + zp), true float32 division
  QLinearConv / QGemm -> Q  acc = sum((x_q - x_zp) * w_q) + bias_q, exact (float64 on integer codes);
                            y_q = clamp(rint(float32(acc) * float32(float32(x_s * w_s[oc]) / y_s)) + y_zp),
                            a ReLU between the layer and its Q folded into the clamp (y_q >= y_zp)
  QGemm, float output       float32(acc) * float32(x_s * w_s[oc])
  QLinearAdd -> Q           MLAS's AVX2 form: y_q = clamp(rint(fma(a_q, r_a, fma(b_q, r_b, fixed)))),
                            r = float32(s_in / y_s), fixed = y_zp - (r_a * a_zp + r_b * b_zp) in float32
  anything left in float    the float op on DequantizeLinear values (DQ(int8) weights, DQ(int32) bias)

Integer outputs are returned dequantized, (y_q - y_zp) * y_s, so the next quantizer (the same Q
node) reproduces y_q exactly. The codes of every quantizer are kept (`FaithfulModel.codes`) for
per-layer comparison. The QLinearAdd formula is that of MLAS's AVX2 kernel (x86 CPUs here); other
ISAs' kernels may round a few elements differently (agreement.py counts them).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from quantlens.backends.qdq import graph as g
from quantlens.backends.qdq import ops
from quantlens.backends.qdq.deploy import DeployLayer
from quantlens.backends.qdq.export import read_layer_map
from quantlens.backends.qdq.inspect import FusionReport, ort_fusion
from quantlens.nn.wrapper import QuantWrapper

_DENSE_OPS = ("QLinearConv", "QGemm", "QLinearMatMul")


@dataclass(frozen=True)
class Requant:
    """Where a fused layer's int32 result goes: the Q node after it (None: float output, QGemm)."""

    op: str
    scale: torch.Tensor | None = None  # 0-d float32
    zero_point: torch.Tensor | None = None  # 0-d, the container dtype
    relu: bool = False


def _requant_target(model, nodes: list[str]) -> tuple[object, bool] | None:
    """(the QuantizeLinear node a layer's output reaches through Relu/Identity only, one consumer each; relu seen)."""
    index = g.GraphIndex.of(model.graph)
    by_name = {n.name: n for n in model.graph.node}
    if len(nodes) != 1 or nodes[0] not in by_name:
        return None
    tensor, relu = by_name[nodes[0]].output[0], False
    while True:
        users = index.consumers.get(tensor, [])
        if len(users) != 1 or tensor in index.outputs:
            return None
        node = users[0]
        if node.op_type == "QuantizeLinear":
            return node, relu
        if node.op_type not in ("Relu", "Identity"):
            return None
        relu = relu or node.op_type == "Relu"
        tensor = node.output[0]


def requant_plans(path: str | Path, fusion: FusionReport) -> dict[str, Requant]:
    """layer -> Requant for every layer ONNX Runtime ran as an integer kernel this module models."""
    import onnx

    model = onnx.load(str(path))
    meta = read_layer_map(model)
    index = g.GraphIndex.of(model.graph)
    plans = {}
    for entry in fusion.layers:
        if entry.runtime_op not in (*_DENSE_OPS, "QLinearAdd"):
            continue
        target = _requant_target(model, meta["layers"].get(entry.layer, []))
        if target is None:
            if entry.runtime_op == "QGemm":
                plans[entry.layer] = Requant("QGemm")
            continue
        q, relu = target
        scale = torch.from_numpy(index.array(q.input[1]).copy()).float()
        zero_point = torch.from_numpy(index.array(q.input[2]).copy())
        if scale.dim() != 0:
            continue
        plans[entry.layer] = Requant(entry.runtime_op, scale, zero_point, relu)
    return plans


class FaithfulLayer(DeployLayer):
    """A DeployLayer that runs the integer path of its fused ONNX Runtime kernel and records codes."""

    def __init__(self, wrapper: QuantWrapper, requant: Requant | None, sink: dict[str, torch.Tensor]) -> None:
        super().__init__(wrapper)
        self.requant = requant
        self.sink = sink

    def _quantize(self, qdq, x: torch.Tensor) -> torch.Tensor:
        codes = ops.quantize_divide(x, qdq.scale, qdq.zero_point, qdq.axis)
        self.sink[qdq.where] = codes
        return codes

    def forward(self, *args, **kwargs):
        codes = [self._quantize(self.input_qdq[i], a) if i < len(self.input_qdq) and torch.is_tensor(a) else None
                 for i, a in enumerate(args)]
        values = tuple(a if c is None else ops.dequantize_codes(c, q.scale, q.zero_point, q.axis)
                       for a, c, q in zip(args, codes, [*self.input_qdq, *[None] * len(args)], strict=False))
        r = self.requant
        if r is not None and not kwargs and r.op in _DENSE_OPS and codes and codes[0] is not None \
                and hasattr(self, "weight_codes") and getattr(self.module, "padding_mode", "zeros") == "zeros":
            out = self._dense(codes[0])
        elif r is not None and not kwargs and r.op == "QLinearAdd" and len(codes) == 2 and None not in codes:
            out = self._add(codes[0], codes[1])
        else:
            out = self.compute(*values, **kwargs)
        if self.output_qdq is not None:
            q = self.output_qdq
            out = ops.dequantize_codes(self._quantize(q, out), q.scale, q.zero_point, q.axis)
        return out

    def _accumulate(self, x_codes: torch.Tensor) -> torch.Tensor:
        """Exact int32 accumulator (float64 holding integers), bias codes included: (B, O, ...) or (B, O)."""
        x_in = self.input_qdq[0]
        xc = (x_codes - x_in.zero_point.to(torch.float32)).double()
        w = self.weight_codes.double() - ops._broadcast(self.weight_zero_point.double(), self.weight_codes.dim(), 0)
        if isinstance(self.module, nn.Linear):
            acc = F.linear(xc, w)
            shape = (-1,)
        else:
            m = self.module
            conv = {1: F.conv1d, 2: F.conv2d}[w.dim() - 2]
            acc = conv(xc, w, None, m.stride, m.padding, m.dilation, m.groups)
            shape = (1, -1) + (1,) * (w.dim() - 2)
        if self.quantized_bias:
            acc = acc + self.bias_codes.double().reshape(shape)
        return acc, shape

    def _dense(self, x_codes: torch.Tensor) -> torch.Tensor:
        acc, shape = self._accumulate(x_codes)
        product = (self.input_qdq[0].scale * self.weight_scale).to(torch.float32)  # float32(x_s * w_s[oc])
        product = product.reshape(shape) if product.dim() else product
        if self.requant.scale is None:  # QGemm with float output
            out = acc.float() * product
            if not self.quantized_bias and self.module.bias is not None:
                out = out + self.module.bias.reshape(shape)
            return out
        return self._requantize(acc.float() * (product / self.requant.scale))

    def _add(self, a_codes: torch.Tensor, b_codes: torch.Tensor) -> torch.Tensor:
        """QLinearAdd as MLAS's AVX2 kernel computes it: ratios r = float32(s_in / s_out), a fixed part
        float32(zp_out) - float32(float32(r_a * zp_a) + float32(r_b * zp_b)), then two fused multiply-adds
        on the raw codes, v = fma(a, r_a, fma(b, r_b, fixed)), rounded to nearest even and saturated.
        (float64 holds each fma's exact result here, so one cast to float32 is the fma's single rounding.)"""
        a, b = self.input_qdq
        y_s, f32 = self.requant.scale, torch.float32
        ra, rb = (a.scale / y_s).to(f32), (b.scale / y_s).to(f32)
        zp_a, zp_b = a.zero_point.to(f32), b.zero_point.to(f32)
        fixed = self.requant.zero_point.to(f32) - ((ra * zp_a).to(f32) + (rb * zp_b).to(f32)).to(f32)
        t = (b_codes.double() * rb.double() + fixed.double()).to(f32)
        v = (a_codes.double() * ra.double() + t.double()).to(f32)
        return self._requantize(v, zero_point_added=True)

    def _requantize(self, v: torch.Tensor, *, zero_point_added: bool = False) -> torch.Tensor:
        """float32 v in output-scale units (plus the zero point when `zero_point_added`) -> the Q node's
        codes, rint then clamp (ReLU folded: codes >= zero point) -> dequantized float32."""
        r = self.requant
        lo, hi = ops._LIMITS[r.zero_point.dtype]
        zp = r.zero_point.to(torch.float32)
        if r.relu:
            lo = max(lo, float(zp))
        q = torch.clamp(torch.round(v) if zero_point_added else torch.round(v) + zp, lo, hi)
        return (q - zp) * r.scale


class FaithfulModel(nn.Module):
    """The model as ONNX Runtime runs it; `codes` maps each quantizer (`where`) to its last codes."""

    def __init__(self, model: nn.Module, codes: dict[str, torch.Tensor], requant: dict[str, Requant]) -> None:
        super().__init__()
        self.model = model
        self.codes = codes
        self.requant = requant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.codes.clear()
        return self.model(x)


def faithful_model(qmodel: nn.Module, path: str | Path, fusion: FusionReport | None = None, *,
                   precise: bool | None = False) -> FaithfulModel:
    """The calibrated fake-quant model `qmodel` as ONNX Runtime runs its QDQ export `path` (eval, CPU).

    fusion: what the runtime fused (default: `inspect.ort_fusion(path)`); layers it left in float
    stay float."""
    fusion = fusion or ort_fusion(path, precise=precise)
    plans = requant_plans(path, fusion)
    target = copy.deepcopy(qmodel).eval().cpu()
    codes: dict[str, torch.Tensor] = {}
    for name, wrapper in [(n, m) for n, m in target.named_modules() if isinstance(m, QuantWrapper)]:
        parent, _, child = name.rpartition(".")
        setattr(target.get_submodule(parent) if parent else target, child,
                FaithfulLayer(wrapper, plans.get(name), codes))
    return FaithfulModel(target, codes, plans).eval()
