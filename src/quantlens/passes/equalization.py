"""Cross-layer equalisation (Nagel et al. 2019, "Data-Free Quantization", section 4.1).

For two layers in a row, y = W2 f(W1 x + b1) + b2, with f positively homogeneous (ReLU, or
nothing: f(x / s) = f(x) / s for s > 0), scaling output channel i of layer 1 down by s_i and input
channel i of layer 2 up by s_i leaves the function unchanged:

    W1[i] /= s_i,  b1[i] /= s_i,  W2[:, i] *= s_i.

With r1_i = max |W1[i]| and r2_i = max |W2[:, i]|, the choice s_i = sqrt(r1_i / r2_i) gives both
the same range afterwards, r1_i / s_i = r2_i * s_i = sqrt(r1_i r2_i): channels whose weights were
far apart in range end up closer, which is what per-tensor weight quantization needs. Chains
(conv -> depthwise -> pointwise) are equalised pair by pair, repeated until the scales stop
changing (the paper iterates the same way).

Preserves: the model's function in eval mode (float rounding aside) and every layer name.
ReLU6 is not positively homogeneous (its clip at 6 does not scale): with `relu6="clip"` (the
default) a ReLU6 between a pair is replaced, at the same name, by a `ChannelClamp` whose
per-channel upper bound 6 / s_i keeps the function exact; `relu6="skip"` leaves such pairs alone.
Expects BatchNorm folded first (pass `fold_bn` before `cle`): a BN between a pair is refused.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import fx, nn

from quantlens.errors import ConfigError, ModelError
from quantlens.passes.graph import WEIGHT_LAYERS, called_module, is_relu, module_calls, only_user, set_submodule, trace

# per-channel and positively homogeneous: pool(x / s) = pool(x) / s channel by channel (s > 0);
# dropout is the identity at inference, which is what the equalised model is for
_PASS_THROUGH = (nn.Identity, nn.Dropout, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
                 nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)


class ChannelClamp(nn.Module):
    """min(max(x, 0), upper[c]) per channel c: a ReLU6 whose channels were rescaled by CLE.

    `upper` (C,) runs along `axis` (1 for (N, C, ...) convolution outputs, -1 for linear ones)."""

    def __init__(self, upper: torch.Tensor, axis: int) -> None:
        super().__init__()
        self.axis = axis
        self.register_buffer("upper", upper)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1] * x.ndim
        shape[self.axis] = -1
        return torch.minimum(torch.clamp(x, min=0), self.upper.reshape(shape))

    def extra_repr(self) -> str:
        return f"channels={self.upper.numel()}, axis={self.axis}"


@dataclass
class EqualizeResult:
    """The equalised copy, its layer pairs, why other layers were not paired, and a range measure."""

    model: nn.Module
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (layer 1, layer 2)
    not_paired: dict[str, str] = field(default_factory=dict)  # layer -> why its output was not equalised
    clamps: list[str] = field(default_factory=list)  # ReLU6 modules replaced by ChannelClamp
    iterations: int = 0
    uniformity_before: float = 0.0  # weight_range_uniformity of the input model
    uniformity_after: float = 0.0
    skipped: str | None = None

    def to_dict(self) -> dict:
        return {"pairs": [list(p) for p in self.pairs], "not_paired": dict(self.not_paired),
                "clamps": list(self.clamps), "iterations": self.iterations,
                "uniformity_before": self.uniformity_before, "uniformity_after": self.uniformity_after,
                "skipped": self.skipped}


def channel_ranges(layer: nn.Module) -> torch.Tensor:
    """max |W| per output channel (O,)."""
    w = layer.weight.detach()
    return w.reshape(w.shape[0], -1).abs().amax(1)


def input_channel_ranges(layer: nn.Module) -> torch.Tensor:
    """max |W| per input channel (I,); a grouped conv's input channel i meets only its group's outputs."""
    w = layer.weight.detach()
    if isinstance(layer, nn.Linear):
        return w.abs().amax(0)  # (O, I) -> (I,)
    g = layer.groups
    w4 = w.reshape(g, w.shape[0] // g, w.shape[1], -1)  # (g, O/g, I/g, kernel)
    return w4.abs().amax(dim=(1, 3)).reshape(-1)  # (g, I/g) -> (I,), input channel gi*(I/g) + j


def weight_range_uniformity(model: nn.Module) -> float:
    """Mean over conv/linear layers of min/max of the per-output-channel weight ranges (1: uniform)."""
    ratios = []
    for m in model.modules():
        if isinstance(m, WEIGHT_LAYERS):
            r = channel_ranges(m)
            if float(r.max()) > 0:
                ratios.append(float(r.min() / r.max()))
    return sum(ratios) / len(ratios) if ratios else 1.0


@torch.no_grad()
def _scale_pair(first: nn.Module, second: nn.Module, clamps: list[ChannelClamp]) -> float:
    """Equalise one pair in place; returns max |s - 1| (how far from converged)."""
    r1, r2 = channel_ranges(first), input_channel_ranges(second)  # (C,), (C,)
    ok = (r1 > 0) & (r2 > 0)  # a dead channel keeps s = 1
    s = torch.where(ok, torch.sqrt(r1 / torch.where(ok, r2, torch.ones_like(r2))), torch.ones_like(r1))
    w1 = first.weight
    w1.div_(s.reshape(-1, *([1] * (w1.ndim - 1))))
    if first.bias is not None:
        first.bias.div_(s)
    w2 = second.weight
    if isinstance(second, nn.Linear):
        w2.mul_(s.reshape(1, -1))
    else:
        g = second.groups
        view = w2.view(g, w2.shape[0] // g, w2.shape[1], -1)  # (g, O/g, I/g, kernel)
        view.mul_(s.reshape(g, 1, w2.shape[1], 1))
    for clamp in clamps:
        clamp.upper.div_(s)
    return float((s - 1).abs().max())


def _follow(start: fx.Node, model: nn.Module, relu6: str, calls: dict):
    """(second layer name, ReLU6/clamp names) of the pair starting at `start`, or (None, reason)."""
    first = called_module(start, model)
    node, clamps = start, []
    while True:
        user = only_user(node)
        if user is None:
            return None, "its output has several users (or none)"
        module = called_module(user, model)
        if module is None:
            if is_relu(user, model):
                node = user
                continue
            return None, f"followed by {user.op} {getattr(user.target, '__name__', user.target)}"
        name = str(user.target)
        if len(calls[name]) != 1:
            return None, f"followed by {name!r}, a module called more than once"
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise ModelError(f"cle: BatchNorm {name!r} follows {str(start.target)!r}; cross-layer equalisation "
                             "expects BatchNorm folded first (run the fold_bn pass before cle)")
        if isinstance(module, (nn.ReLU6, ChannelClamp)):
            if relu6 == "skip" and isinstance(module, nn.ReLU6):
                return None, f"followed by ReLU6 {name!r} (relu6='skip')"
            clamps.append(name)
        elif not (isinstance(module, _PASS_THROUGH) or type(module) is nn.ReLU):
            if type(module) not in WEIGHT_LAYERS:
                return None, f"followed by {name!r}, a {type(module).__name__}"
            if type(module) is not type(first):
                return None, f"followed by {name!r}, a {type(module).__name__} (not a {type(first).__name__})"
            in_channels = module.in_features if isinstance(module, nn.Linear) else module.in_channels
            out_channels = first.out_features if isinstance(first, nn.Linear) else first.out_channels
            if in_channels != out_channels:
                return None, f"{name!r} takes {in_channels} channels, this layer gives {out_channels}"
            return name, clamps
        node = user


def equalize(model: nn.Module, *, iterations: int = 20, tolerance: float = 1e-4, relu6: str = "clip") -> EqualizeResult:
    """A copy of `model` (BN already folded) with cross-layer equalisation applied; the input is untouched.

    iterations: at most this many sweeps over all pairs; stops earlier once every scale is within
    `tolerance` of 1. relu6: "clip" (ReLU6 between a pair becomes a per-channel ChannelClamp) or
    "skip" (such pairs are left alone)."""
    if relu6 not in ("clip", "skip"):
        raise ConfigError(f"cle: relu6 must be 'clip' or 'skip', got {relu6!r}")
    if iterations < 1:
        raise ConfigError(f"cle: iterations must be >= 1, got {iterations}")
    target = copy.deepcopy(model)
    result = EqualizeResult(target, uniformity_before=weight_range_uniformity(model))
    graph, why = trace(target)
    if graph is None:
        result.skipped, result.uniformity_after = why, result.uniformity_before
        return result
    calls = module_calls(graph)
    pairs = []
    for node in graph.nodes:
        layer = called_module(node, target)
        if type(layer) not in WEIGHT_LAYERS:
            continue
        name = str(node.target)
        if len(calls[name]) != 1:
            result.not_paired[name] = "called more than once (a shared module)"
            continue
        second, found = _follow(node, target, relu6, calls)
        if second is None:
            result.not_paired[name] = found
        else:
            pairs.append((name, second, found))
    clamp_modules: list[list[ChannelClamp]] = []
    for first_name, _, clamp_names in pairs:
        first = target.get_submodule(first_name)
        channels = channel_ranges(first).numel()
        axis = -1 if isinstance(first, nn.Linear) else 1
        modules = []
        for clamp_name in clamp_names:
            module = target.get_submodule(clamp_name)
            if isinstance(module, nn.ReLU6):
                module = ChannelClamp(torch.full((channels,), 6.0, device=first.weight.device), axis)
                set_submodule(target, clamp_name, module)
                result.clamps.append(clamp_name)
            modules.append(module)
        clamp_modules.append(modules)
    result.pairs = [(a, b) for a, b, _ in pairs]
    for sweep in range(iterations):
        change = 0.0
        for (first_name, second_name, _), clamps in zip(pairs, clamp_modules, strict=True):
            change = max(change, _scale_pair(target.get_submodule(first_name), target.get_submodule(second_name),
                                             clamps))
        result.iterations = sweep + 1
        if change < tolerance:
            break
    result.uniformity_after = weight_range_uniformity(target)
    return result
