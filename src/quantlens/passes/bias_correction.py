"""Empirical bias correction of a quantized model (Nagel et al. 2019, "Data-Free Quantization",
section 4.2, in its empirical form as in AIMET).

Quantizing a layer's weights, W_q = W + dW, shifts the mean of its output by E[dW x]; every
later layer sees that shift. Per output channel c, this pass measures on calibration data

    delta_c = E[(W - W_q) x]_c            x: the input the quantized layer computes with

and sets the layer's bias to b_float + delta, so the quantized layer's mean output equals the
float layer's on the same inputs. x is the wrapper's input *after* its input quantizer, in the
quantized model as corrected so far: layers are corrected one at a time in execution order, so
later layers see (and compensate for) the corrected earlier ones. The reference is the float
model's layer (weights and bias), so running the pass twice gives the same biases. What is
corrected is the weight-quantization error only; a wrapper's output quantizer is left out.

Preserves: layer names, the quantizers and their scales (the bias is not quantized by the
wrappers); changes: the bias of each corrected layer (created as zeros where there was none).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from quantlens import events
from quantlens.devices import module_device
from quantlens.errors import ModelError
from quantlens.nn.convert import quant_wrappers
from quantlens.passes.graph import each_layer_input, execution_order, layer_kind_ok


@dataclass
class BiasCorrectionResult:
    """The corrected model (the quantized model itself, edited in place) and what was done per layer."""

    model: nn.Module
    corrected: dict[str, float] = field(default_factory=dict)  # layer -> mean |delta| over channels
    skipped: dict[str, str] = field(default_factory=dict)  # layer -> why it was not corrected
    samples: int = 0

    def to_dict(self) -> dict:
        return {"corrected": dict(self.corrected), "skipped": dict(self.skipped), "samples": self.samples}


def layer_output(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The conv/linear `layer` computed with the given weight and bias (its own strides, groups...)."""
    if isinstance(layer, nn.Linear):
        return F.linear(x, weight, bias)
    return layer._conv_forward(x, weight, bias)


def channel_mean(y: torch.Tensor, layer: nn.Module) -> tuple[torch.Tensor, int]:
    """(per-channel sum (C,), count): channels on axis 1 for convolutions, the last axis for linears."""
    if isinstance(layer, nn.Linear):
        flat = y.reshape(-1, y.shape[-1])  # (N*..., C)
        return flat.sum(0), flat.shape[0]
    flat = y.transpose(0, 1).reshape(y.shape[1], -1)  # (C, N*L)
    return flat.sum(1), flat.shape[1]


def _reason(name: str, wrapper, float_model: nn.Module) -> str | None:
    if not layer_kind_ok(wrapper):
        return f"a {type(wrapper.module).__name__} without a quantized weight"
    try:
        reference = float_model.get_submodule(name)
    except AttributeError:
        return "the float model has no layer of this name"
    if type(reference) is not type(wrapper.module) or reference.weight.shape != wrapper.module.weight.shape:
        return "the float model's layer of this name has another type or shape"
    return None


@torch.no_grad()
def correct_bias(model: nn.Module, float_model: nn.Module, batches: Iterable[torch.Tensor]) -> BiasCorrectionResult:
    """Correct the biases of `model` (quantized and calibrated) in place; returns what was done.

    `float_model`: the float model `model` was quantized from (after any float-stage passes), whose
    layers of the same names are the reference. `batches`: calibration inputs (tensors; iterated
    once per layer, so they are kept in a list), moved to the device of the model's parameters."""
    batches = list(batches)
    if not batches:
        raise ModelError("bias_correction needs at least one calibration batch")
    device = module_device(model)
    was_training = model.training
    model.eval()
    result = BiasCorrectionResult(model, samples=sum(len(b) for b in batches))
    try:
        wrappers = dict(quant_wrappers(model))
        order = execution_order(model, batches[0].to(device))
        for name in wrappers:
            if name not in order:
                result.skipped[name] = "not reached by a forward pass"
        with events.task("bias correction", total=len(order), unit="layers") as progress:
            for name in order:
                wrapper = wrappers[name]
                reason = _reason(name, wrapper, float_model)
                if reason is not None:
                    result.skipped[name] = reason
                else:
                    result.corrected[name] = _correct_layer(model, wrapper, float_model.get_submodule(name),
                                                            batches, device)
                progress.advance(1, status=name)
    finally:
        model.train(was_training)
    return result


def _correct_layer(model: nn.Module, wrapper, reference: nn.Module, batches, device) -> float:
    layer = wrapper.module
    w_float = reference.weight.detach().to(device=device, dtype=layer.weight.dtype)
    w_quant = wrapper.param_quantizers["weight"](layer.weight)  # cached fake-quantized weight
    dw = w_float - w_quant
    total, count = None, 0
    for x in each_layer_input(model, wrapper, batches, device):
        s, n = channel_mean(layer_output(layer, x, dw, None), layer)  # (C,): sum of (W - W_q) x
        total, count = (s if total is None else total + s), count + n
    if total is None:
        raise ModelError(f"bias_correction: no calibration data reached {wrapper.layer_name!r}")
    b_float = (reference.bias.detach().to(device=device, dtype=layer.weight.dtype) if reference.bias is not None
               else torch.zeros_like(total))
    new_bias = b_float + total / count  # (C,)
    if layer.bias is None:
        layer.bias = nn.Parameter(new_bias, requires_grad=layer.weight.requires_grad)
    else:
        layer.bias.copy_(new_bias)  # in place: bumps the version counter, so any cache over it is dropped
    return float((total / count).abs().mean())
