"""Checks on the converted graph (it computes with quantlens's params, nothing else) and on the CPU running it."""

from __future__ import annotations

import torch

from quantlens.backends.base import BackendError, cpu_has_int8_dot_product
from quantlens.backends.pt2e.channel_pad import split_padding
from quantlens.backends.pt2e.graph import quantize_nodes, weight_codes
from quantlens.backends.pt2e.observers import QuantizedTensor
from quantlens.backends.pt2e.params import FixedParams
from quantlens.nn.wrapper import QuantWrapper
from quantlens.scaling import quantize


def verify_converted(gm: torch.fx.GraphModule, wrappers: dict[str, QuantWrapper], tensors: list[QuantizedTensor],
                     params: dict[str, FixedParams]) -> dict[str, int]:
    """Each quantize node's params are one of ours; each quantized weight's s8 codes equal quantlens's (a padded
    input channel, see channel_pad, must hold zeros). Returns layer -> verified output channels."""
    ours = {(t.scale, t.zero_point) for t in tensors if t.source != "float"}
    for q in quantize_nodes(gm):
        scale, zp = q["scale"], q["zero_point"]
        key = (float(scale), int(zp)) if not torch.is_tensor(scale) or scale.dim() == 0 else (
            tuple(scale.tolist()), tuple(int(z) for z in zp.tolist()))
        if key not in ours:
            raise BackendError(f"pt2e deployment: quantize node {q['node']} has params {key} that quantlens did not "
                               "give (re-calibrated?): refused")
    codes = weight_codes(gm)
    verified = {}
    for name, wrapper in wrappers.items():
        if "weight" not in wrapper.param_quantizers or name not in codes:
            continue
        pq = wrapper.param_quantizers["weight"]
        weight = wrapper.module.weight
        expected = quantize(pq.view(weight).detach().float(), pq.spec.format, pq.params_for(weight))
        expected = expected.reshape(weight.shape)
        stored, scale = codes[name]
        got, padding = split_padding(stored, weight.shape[1])
        if (stored.dtype != torch.int8 or got.shape != expected.shape or not torch.equal(got.float(), expected)
                or bool(padding.any())):
            diff = int((got.float() - expected).abs().max()) if got.shape == expected.shape else "shape"
            raise BackendError(f"{name} weight: pt2e's int8 weight is not quantlens's codes (max |diff| {diff}); "
                               "refused")
        if not torch.equal(torch.as_tensor(scale).float(), params[f"{name} weight"].scale):
            raise BackendError(f"{name} weight: pt2e's weight scales are not quantlens's; refused")
        verified[name] = int(weight.shape[0])
    return verified


def saturation_risk(wrappers: dict[str, QuantWrapper]) -> list[str]:
    """A note when the deployed kernels may not compute what the simulation does: without VNNI/AMX-INT8, oneDNN's
    u8 x s8 kernels (vpmaddubsw) add pairs of products in saturating int16, which 8-bit weight codes
    (|q| up to 127) times u8 activation codes (up to 255) can overflow. 7-bit weights cannot overflow it."""
    if cpu_has_int8_dot_product():
        return []
    wide = [name for name, w in wrappers.items() if "weight" in w.param_quantizers
            and w.param_quantizers["weight"].spec.format.bits == 8]
    if not wide:
        return []
    return [f"this CPU has no VNNI: oneDNN's INT8 kernels add pairs of u8 x s8 products in saturating int16, which "
            f"8-bit weight codes can overflow ({len(wide)} layer(s): {', '.join(wide[:3])}"
            f"{' ...' if len(wide) > 3 else ''}): the deployed logits may differ from the simulation (check them "
            "with check_pt2e); 7-bit weights (int7) cannot overflow"]
