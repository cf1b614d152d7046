"""The calibrated fake-quant model as the module the exporter traces: quantizers become QDQ custom ops.

Each `QuantWrapper` is replaced (same name) by a `DeployLayer` holding what the ONNX file stores:

    activation quantizer -> `QDQ`: scale (0-d, or (C,) per channel), zero point as uint8/int8
    conv/linear weight   -> int8 codes (O, I, kH, kW) + per-channel scale (O,) (+ zero point), axis 0
    bias (input per tensor, weights integer) -> int32 codes round(b / (x_scale * w_scale[oc]))
    other parameters the simulation quantizes (the `norm` role) -> their fake-quantized float values

Only formats ONNX Runtime's CPU provider executes as integer QDQ are accepted: 8-bit integers for
activations (int8 -> s8, uint8 -> u8, int8_asym -> u8 with zero point + 128, the same values), 2..8-bit
integers for weights (held in an int8/uint8 container). Anything else is a one-line BackendError.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from quantlens.backends.base import BackendError, check_integer_kernel_spec
from quantlens.backends.qdq import ops
from quantlens.formats import IntFormat
from quantlens.nn.quantizer import ActivationQuantizer, ParamQuantizer
from quantlens.nn.wrapper import QuantWrapper
from quantlens.scaling import PerChannel, PerTensor, quantize


@dataclass(frozen=True)
class Codec:
    """How quantlens codes are stored: container dtype and the offset added to codes and zero points."""

    dtype: torch.dtype
    offset: int


def _simulation_only(where: str, fmt) -> BackendError:
    return BackendError(f"{where}: {fmt.name} is simulation only on ONNX Runtime CPU (QDQ export supports int8/uint8)")


def activation_codec(fmt, where: str) -> Codec:
    """int8 -> s8, uint8 -> u8, int8_asym -> u8 (+128); other formats are simulation only."""
    if isinstance(fmt, IntFormat) and fmt.bits == 8 and not fmt.narrow_range:
        if not fmt.signed:
            return Codec(torch.uint8, 0)
        return Codec(torch.int8, 0) if fmt.symmetric else Codec(torch.uint8, 128)
    raise _simulation_only(where, fmt)


def weight_codec(fmt, where: str) -> Codec:
    """2..8-bit integers in an int8 (signed) or uint8 (unsigned) container: DequantizeLinear is exact."""
    if isinstance(fmt, IntFormat) and fmt.bits <= 8:
        return Codec(torch.int8 if fmt.signed else torch.uint8, 0)
    raise _simulation_only(where, fmt)


def _check_spec(spec, where: str) -> None:
    check_integer_kernel_spec(spec, where, "ONNX Runtime CPU QDQ form", "QuantizeLinear")


class QDQ(nn.Module):
    """One activation quantizer as QuantizeLinear -> DequantizeLinear (its calibrated, fixed params)."""

    def __init__(self, quantizer: ActivationQuantizer, layer: str, role: str) -> None:
        super().__init__()
        spec = quantizer.spec
        where = f"{layer} {role}"
        codec = activation_codec(spec.format, where)  # MX/NVFP4/FP8 ...: "simulation only" first
        _check_spec(spec, where)
        params = quantizer.params
        if params is None or not spec.static:
            raise BackendError(f"{where}: no calibrated static range (QDQ export needs fixed scales: calibrate "
                               "the model, dynamic ranges are simulation only)")
        self.where = quantizer.where
        if isinstance(params.granularity, PerChannel):
            self.axis = int(params.granularity.axis)
            scale, zero_point = params.scale.reshape(-1), params.zero_point.reshape(-1)
        else:
            self.axis = 1
            scale, zero_point = params.scale.reshape(()), params.zero_point.reshape(())
        self.register_buffer("scale", scale.detach().to(torch.float32).clone())
        self.register_buffer("zero_point", (zero_point.to(torch.int32) + codec.offset).to(codec.dtype).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.qdq(x, self.scale, self.zero_point, self.axis)


def weight_codes(pq: ParamQuantizer, weight: torch.Tensor, where: str) -> tuple[torch.Tensor, torch.Tensor,
                                                                                 torch.Tensor]:
    """(codes in the parameter's shape, scale (O,) or 0-d, zero point like scale) from quantlens's own
    params; checks that DequantizeLinear of the codes equals the simulation's fake-quantized weight."""
    spec = pq.spec
    codec = weight_codec(spec.format, where)
    _check_spec(spec, where)
    view = pq.view(weight).detach().float()
    params = pq.params_for(weight)
    codes = quantize(view, spec.format, params)  # exact integers in [qmin, qmax], zero point included
    per_channel = isinstance(params.granularity, PerChannel)
    if not (per_channel and params.granularity.axis in (0, -view.dim())) and not isinstance(params.granularity,
                                                                                             PerTensor):
        raise BackendError(f"{where}: per-channel weight scales along axis {params.granularity.axis} have no "
                           "QLinearConv form (QDQ export needs axis 0, the output channels)")
    shape = (-1,) if per_channel else ()
    scale = params.scale.reshape(shape).float()
    zero_point = params.zero_point.reshape(shape).to(torch.int32) + codec.offset
    stored = (codes.to(torch.int32) + codec.offset).to(codec.dtype).reshape(weight.shape)
    simulated = pq(weight).detach()
    back = ops.dequantize_codes(stored, scale, zero_point.to(codec.dtype), 0)
    if not torch.equal(back, simulated):
        raise BackendError(f"{where}: integer codes do not reproduce the simulated weight exactly "
                           f"(max |diff| {float((back - simulated).abs().max()):.3g}); export refused")
    return stored, scale.contiguous(), zero_point.to(codec.dtype).contiguous()


class DeployLayer(nn.Module):
    """A QuantWrapper as the ONNX file computes it: QDQ inputs, DQ(int8) weights, int32 bias, QDQ output."""

    def __init__(self, wrapper: QuantWrapper) -> None:
        super().__init__()
        name = wrapper.layer_name
        self.layer_name = name
        self.kind_name = wrapper.kind.name
        module = copy.deepcopy(wrapper.module)
        self.input_qdq = nn.ModuleList(QDQ(q, name, f"input {i}") for i, q in enumerate(wrapper.input_quantizers))
        output = wrapper.output_quantizer
        self.output_qdq = QDQ(output, name, "output") if output is not None else None
        self.dense = isinstance(module, (nn.modules.conv._ConvNd, nn.Linear))
        self.quantized_bias = False
        self.float_params: dict[str, str] = {}  # parameter -> why it stays float (for not_exported)
        for pname, pq in wrapper.param_quantizers.items():
            value = getattr(wrapper.module, pname)
            if self.dense and pname == "weight":
                codes, scale, zero_point = weight_codes(pq, value, f"{name} weights")
                self.register_buffer("weight_codes", codes)
                self.register_buffer("weight_scale", scale)
                self.register_buffer("weight_zero_point", zero_point)
                self._remove(module, pname)
                self._quantize_bias(module)
            else:  # a quantized non-matmul parameter (norm role): its simulated values, in float
                self._remove(module, pname)
                self.register_buffer(f"fq_{pname}", pq(value).detach().clone())
                self.float_params[pname] = f"{pq.spec.describe()} values stored as float32 (no integer kernel)"
        self.module = module

    @staticmethod
    def _remove(module: nn.Module, pname: str) -> None:
        if pname in module._parameters:
            del module._parameters[pname]
        elif pname in module._buffers:
            del module._buffers[pname]
        if pname in ("weight", "bias"):  # conv/linear forwards read these attributes
            setattr(module, pname, None)

    def _quantize_bias(self, module: nn.Module) -> None:
        """int32 bias with scale x_scale * w_scale[oc] (float32 product), when the input is per tensor."""
        bias = getattr(module, "bias", None)
        if bias is None or len(self.input_qdq) != 1 or self.input_qdq[0].scale.dim() != 0:
            return
        if not self.weight_zero_point.eq(0).all():
            return
        scale = (self.input_qdq[0].scale * self.weight_scale).to(torch.float32)
        scale = scale.expand(bias.shape).contiguous()
        codes = torch.round(bias.detach().float() / scale).clamp(-(2.0**31), 2.0**31 - 1).to(torch.int32)
        self.register_buffer("bias_codes", codes)
        self.register_buffer("bias_scale", scale)
        self.quantized_bias = True
        self._remove(module, "bias")

    def weight(self) -> torch.Tensor:
        return ops.dq(self.weight_codes, self.weight_scale, self.weight_zero_point, 0)

    def bias(self) -> torch.Tensor | None:
        return ops.dq_bias(self.bias_codes, self.bias_scale) if self.quantized_bias else self.module.bias

    def forward(self, *args, **kwargs):
        args = tuple(self.input_qdq[i](a) if i < len(self.input_qdq) and torch.is_tensor(a) else a
                     for i, a in enumerate(args))
        out = self.compute(*args, **kwargs)
        return self.output_qdq(out) if self.output_qdq is not None else out

    def compute(self, *args, **kwargs):
        """The float module on already quantized-dequantized inputs, with DQ(int8) weights and DQ(int32) bias."""
        if self.dense and hasattr(self, "weight_codes"):
            x = args[0]
            if isinstance(self.module, nn.Linear):
                out = F.linear(x, self.weight(), self.bias())
            else:
                out = self.module._conv_forward(x, self.weight(), self.bias())
        elif self.float_params:
            params = {p: getattr(self, f"fq_{p}") for p in self.float_params}
            out = functional_call(self.module, params, args, kwargs)
        else:
            out = self.module(*args, **kwargs)
        return out


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def deploy_model(qmodel: nn.Module) -> nn.Module:
    """A copy of the calibrated fake-quant model with every QuantWrapper as a DeployLayer (eval, CPU)."""
    target = copy.deepcopy(qmodel).eval().cpu()
    wrappers = [(n, m) for n, m in target.named_modules() if isinstance(m, QuantWrapper)]
    if not wrappers:
        raise BackendError("QDQ export needs a quantized model (quantlens.nn.quantize_model + calibrate); "
                           "this one has no quantized layer")
    for name, wrapper in wrappers:
        _set_submodule(target, name, DeployLayer(wrapper))
    return target


def check_deployable(plans: dict) -> None:
    """BackendError naming the first layer and role a QDQ file cannot hold, before any calibration:
    `plans` maps layer names to LayerPlans (a recipe planned on the model)."""
    for name, plan in plans.items():
        for role, spec in (("weights", plan.weights), ("inputs", plan.inputs), ("outputs", plan.outputs),
                           ("norm", plan.norm)):
            if spec is None:
                continue
            where = f"{name} {role}"
            if role == "weights":
                weight_codec(spec.format, where)
            elif role == "norm":
                raise BackendError(f"{where}: quantized normalisation parameters have no QDQ form (fold BatchNorm "
                                   "into the convolution: pass fold_bn)")
            else:
                activation_codec(spec.format, where)
                if not spec.static:
                    raise BackendError(f"{where}: dynamic ranges have no static QDQ form (use a calibrating observer)")
            _check_spec(spec, where)
