"""Fold BatchNorm into the convolution or linear layer that feeds it (inference semantics).

In eval mode a BatchNorm is a per-channel affine map of its input,

    bn(y) = gamma * (y - running_mean) / sqrt(running_var + eps) + beta = t * y + (beta - t * mean),

so after `y = W x + b` it folds into the layer: W' = t * W (row o scaled by t[o]), b' = t * (b - mean)
+ beta. The folded model computes the same function as the original in eval mode (float rounding
aside) and is what every deployment runs: the BN disappears into the layer's weights.

Folded BNs are replaced by `nn.Identity` at the same name (not removed from the graph), so the
model keeps its class and `forward`, and every other layer keeps its name. A BN is folded only
where torch.fx shows that its input is the output of a Conv1d/Conv2d/ConvTranspose1d/2d/Linear
that nothing else reads, and both modules are called once; every other BN is left in place and
reported with the reason.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from quantlens.errors import ModelError
from quantlens.passes.graph import called_module, module_calls, only_user, set_submodule, trace

# layer type -> the BatchNorm type whose channel axis (1) is the layer's output-channel axis
_FOLDABLE: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d,
    nn.ConvTranspose1d: nn.BatchNorm1d, nn.ConvTranspose2d: nn.BatchNorm2d,
    nn.Linear: nn.BatchNorm1d,  # (N, features) inputs: BatchNorm1d normalises axis 1 = the features
}


@dataclass
class FoldResult:
    """The folded copy, which BN folded into which layer, and why the others were not."""

    model: nn.Module
    folded: dict[str, str] = field(default_factory=dict)  # BN name -> layer name
    not_folded: dict[str, str] = field(default_factory=dict)  # BN name -> reason
    skipped: str | None = None  # why nothing at all was attempted (e.g. not traceable)

    def to_dict(self) -> dict:
        return {"folded": dict(self.folded), "not_folded": dict(self.not_folded), "skipped": self.skipped}


def _out_channels(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def _why_not(bn_name: str, bn: nn.Module, model: nn.Module, calls: dict) -> tuple[str | None, str | None]:
    """(layer name, None) when the BN can fold into that layer, else (None, reason)."""
    nodes = calls.get(bn_name, [])
    if len(nodes) != 1:
        return None, f"called {len(nodes)} times in the traced forward (folding needs exactly one call)"
    if bn.running_mean is None or bn.running_var is None:
        return None, "has no running statistics (track_running_stats=False): it normalises with batch statistics"
    source = nodes[0].args[0] if nodes[0].args else None
    layer = called_module(source, model) if hasattr(source, "op") else None
    if layer is None:
        return None, "its input is not the output of a layer module"
    layer_name = str(source.target)
    if type(layer) not in _FOLDABLE:
        return None, f"its input comes from {layer_name!r}, a {type(layer).__name__} (not a conv/linear)"
    if _FOLDABLE[type(layer)] is not type(bn):
        return None, f"a {type(bn).__name__} after a {type(layer).__name__} normalises another axis"
    if _out_channels(layer) != bn.num_features:
        return None, f"{layer_name!r} has {_out_channels(layer)} output channels, the BN {bn.num_features}"
    if only_user(source) is not nodes[0]:
        return None, f"the output of {layer_name!r} has other users besides this BN"
    if len(calls.get(layer_name, [])) != 1:
        return None, f"{layer_name!r} is called more than once (a shared module)"
    return layer_name, None


@torch.no_grad()
def fold_bn_into(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Fold `bn` (eval semantics) into `layer`'s weight and bias in place; creates a bias if needed."""
    weight = layer.weight
    t = (bn.weight.double() if bn.affine else 1.0) / torch.sqrt(bn.running_var.double() + bn.eps)  # (C,)
    beta = bn.bias.double() if bn.affine else torch.zeros_like(t)
    bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(t)
    w = weight.double()
    if isinstance(layer, nn.modules.conv._ConvTransposeNd):
        g = layer.groups  # weight (C_in, C_out/g, *k): output channel gi*(C_out/g) + j
        w = (w.reshape(g, weight.shape[0] // g, weight.shape[1], -1)
             * t.reshape(g, 1, weight.shape[1], 1)).reshape(weight.shape)
    else:
        w = w * t.reshape(-1, *([1] * (weight.ndim - 1)))  # rows are output channels
    weight.copy_(w.to(weight.dtype))
    new_bias = ((bias - bn.running_mean.double()) * t + beta).to(weight.dtype)
    if layer.bias is None:
        layer.bias = nn.Parameter(new_bias, requires_grad=weight.requires_grad)
    else:
        layer.bias.copy_(new_bias)


def fold_batchnorm(model: nn.Module) -> FoldResult:
    """A copy of the eval-mode `model` with every foldable BatchNorm folded (the input is untouched).

    Refuses a model in train mode: folding uses the running statistics, which is the function
    the model computes in eval mode only (call `model.eval()` first)."""
    if model.training:
        raise ModelError("fold_bn: the model is in train mode; BatchNorm folding uses the running statistics "
                         "(eval-mode semantics): call model.eval() first")
    target = copy.deepcopy(model)
    bns = {n: m for n, m in target.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    if not bns:
        return FoldResult(target)
    graph, why = trace(target)
    if graph is None:
        return FoldResult(target, not_folded=dict.fromkeys(bns, why), skipped=why)
    calls = module_calls(graph)
    result = FoldResult(target)
    plans = []
    for name, bn in bns.items():
        layer_name, reason = _why_not(name, bn, target, calls)
        if reason is not None:
            result.not_folded[name] = reason
        else:
            plans.append((name, layer_name))
    for name, layer_name in plans:
        fold_bn_into(target.get_submodule(layer_name), bns[name])
        set_submodule(target, name, nn.Identity())
        result.folded[name] = layer_name
    return result
