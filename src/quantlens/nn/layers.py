"""The quantizable layer types: one `register_layer` call each."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from quantlens.nn.ops import Add, MatMul, Mul
from quantlens.nn.registry import register_layer


def _conv(module, params, x):
    return module._conv_forward(x, params["weight"], module.bias)


def _linear(module, params, x):
    return F.linear(x, params["weight"], module.bias)


_BN = ("weight", "bias", "running_mean", "running_var")

register_layer(nn.Conv1d, weight_params=("weight",), input_axes=(1,), matmul=True, call=_conv)
register_layer(nn.Conv2d, weight_params=("weight",), input_axes=(1,), matmul=True, call=_conv)
register_layer(nn.Linear, weight_params=("weight",), input_axes=(-1,), matmul=True, call=_linear)
# BatchNorm folds into the preceding convolution in every deployment: its input is that
# convolution's accumulator, never a stored low-precision tensor, so it is not quantized by default.
register_layer(nn.BatchNorm1d, norm_params=_BN, input_axes=(1,), quantize_inputs=False)
register_layer(nn.BatchNorm2d, norm_params=_BN, input_axes=(1,), quantize_inputs=False)
register_layer(nn.LayerNorm, norm_params=("weight", "bias"), input_axes=(-1,))
register_layer(nn.MaxPool2d, input_axes=(1,), quantize_inputs=False)
register_layer(nn.AvgPool2d, input_axes=(1,))
register_layer(nn.AdaptiveAvgPool2d, input_axes=(1,))
register_layer(nn.ReLU, quantize_inputs=False)
register_layer(nn.ReLU6, quantize_inputs=False)
for _activation in (nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh):
    register_layer(_activation)
register_layer(nn.Softmax, input_axes=(-1,))
register_layer(Add, input_axes=(None, None))
register_layer(Mul, input_axes=(None, None))
# (B, h, N, d) @ (B, h, d, N): blocks run along each operand's reduction axis.
register_layer(MatMul, input_axes=(-1, -2), matmul=True)
