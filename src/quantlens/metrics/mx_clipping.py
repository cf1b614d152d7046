"""How often an OCP MX shared-scale rule clips a block: the fraction of blocks whose largest
magnitude exceeds the element format's max times the block's power-of-two scale.

The spec's `floor` rule puts block maxima in [4, 8) for E2M1 (max 6), so up to a quarter of a
block's range saturates in many blocks; `even` clips fewer, `rceil`/`ceil` none. Weights are
measured on their (out, fan-in) views, blocks along the fan-in; layer inputs on sample batches,
blocks along the channels, exactly as the quantizers cut them.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from quantlens.formats import BlockFormat
from quantlens.formats.blocks import mx_clipped_block_fraction
from quantlens.nn import quant_wrappers
from quantlens.nn.quantizer import ActivationQuantizer, channel_axis


def _is_mx(spec) -> bool:
    return spec is not None and isinstance(spec.format, BlockFormat) and spec.format.rule == "ocp_mx"


class _InputClipping:
    """Accumulates one input quantizer's clipped-block fraction over batches (weighted by elements)."""

    def __init__(self, quantizer: ActivationQuantizer) -> None:
        self.quantizer, self.weighted, self.elements = quantizer, 0.0, 0

    def __call__(self, module: nn.Module, args: tuple) -> None:
        x = args[0]
        spec = self.quantizer.spec
        rows = x.detach().movedim(channel_axis(x, self.quantizer.axis), -1)  # blocks along the channels
        self.weighted += mx_clipped_block_fraction(rows, spec.format, spec.mx_rule) * x.numel()
        self.elements += x.numel()

    @property
    def fraction(self) -> float | None:
        return self.weighted / self.elements if self.elements else None


@torch.inference_mode()
def mx_clipping(qmodel: nn.Module, batches: Iterable[torch.Tensor]) -> dict | None:
    """Per layer and overall clipped-block fractions of MX weights and inputs; None when nothing is MX."""
    layers: dict[str, dict] = {}
    hooks, inputs = [], {}
    for name, wrapper in quant_wrappers(qmodel):
        weight_q = wrapper.param_quantizers["weight"] if "weight" in wrapper.param_quantizers else None
        if weight_q is not None and _is_mx(weight_q.spec):
            view = weight_q.view(wrapper.module.weight).detach()
            layers.setdefault(name, {})["weights"] = mx_clipped_block_fraction(view, weight_q.spec.format,
                                                                               weight_q.spec.mx_rule)
            layers[name]["rule"] = weight_q.spec.mx_rule
        for i, q in enumerate(wrapper.input_quantizers):
            if _is_mx(q.spec):
                inputs[(name, i)] = tracker = _InputClipping(q)
                hooks.append(q.register_forward_pre_hook(tracker))
    if not layers and not inputs:
        return None
    device = next((p.device for p in qmodel.parameters()), torch.device("cpu"))
    try:
        for x in batches:
            qmodel(x.to(device))
    finally:
        for h in hooks:
            h.remove()
    for (name, i), tracker in inputs.items():
        layers.setdefault(name, {})[f"input {i}"] = tracker.fraction
        layers[name].setdefault("rule", tracker.quantizer.spec.mx_rule)
    weights = [v["weights"] for v in layers.values() if v.get("weights") is not None]
    acts = [f for v in layers.values() for k, f in v.items() if k.startswith("input") and f is not None]
    return {"unit": "fraction of blocks whose maximum is clipped",
            "weights_mean": sum(weights) / len(weights) if weights else None,
            "inputs_mean": sum(acts) / len(acts) if acts else None, "layers": layers}
