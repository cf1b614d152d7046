"""Quantizable layer kinds, registered by float module type (one entry per type, no per-type classes).

A `LayerKind` says which of a module's tensors the wrapper quantizes and along which axis its
per-channel/per-block scales run; the single `QuantWrapper` does the rest for every kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from quantlens.registry import Registry

# call(module, quantized_params, *inputs) -> output; None means torch.func.functional_call.
LayerCall = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class LayerKind:
    """What the wrapper quantizes for one float module type.

    weight_params: quantized with the weight role, viewed as (out_channels, fan_in); per-channel
        scales run along the output channels, blocks along the fan-in (the reduction axis).
    norm_params: parameters and running statistics quantized with the bn role, per tensor or per
        channel (axis 0).
    input_axes: one entry per tensor input: the axis of per-channel/per-block input scales
        (None: 1 for (N, C, H, W) tensors, else the last axis).
    quantize_inputs: False where quantizing the input by default would model something no
        deployment does: grid-preserving operations (ReLU, max-pool), whose input is re-quantized
        by the next consumer anyway, and BatchNorm, which folds into the convolution before it.
        An override that sets inputs.mode/inputs.format for the type turns it on.
    matmul: a dot-product layer (convolution, linear, matmul) whose inputs are the operands
        low-precision hardware multiplies; recipes with `input_ops: matmul` quantize only these.
    """

    float_type: type[nn.Module]
    weight_params: tuple[str, ...] = ()
    norm_params: tuple[str, ...] = ()
    input_axes: tuple[int | None, ...] = (None,)
    quantize_inputs: bool = True
    matmul: bool = False
    call: LayerCall | None = None

    @property
    def name(self) -> str:
        return self.float_type.__name__


QUANT_LAYERS: Registry[LayerKind] = Registry("quantizable layer")
_BY_TYPE: dict[type[nn.Module], LayerKind] = {}


def register_layer(float_type: type[nn.Module], **fields) -> LayerKind:
    kind = LayerKind(float_type, **fields)
    QUANT_LAYERS.add(kind.name, kind)
    _BY_TYPE[float_type] = kind
    return kind


def kind_of(module: nn.Module) -> LayerKind | None:
    """The kind registered for the module's type or its nearest registered base class."""
    for cls in type(module).__mro__:
        if cls in _BY_TYPE:
            return _BY_TYPE[cls]
    return None
