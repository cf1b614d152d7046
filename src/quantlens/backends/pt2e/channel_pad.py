"""Give INT8 convolutions with one input channel a second, all-zero channel, so inductor compiles them.

Why: a quantized convolution whose input has one channel (the stem of a grayscale model: PneumoniaMNIST's
compact_cnn, (B, 1, 28, 28)) fails to compile with a dynamic batch in torch 2.13's inductor:

    AssertionError: expected size 48==48, stride 1==784 at dim=1; ... (qconv, postop relu)

Inductor's convolution lowering (`mkldnn_ir._prepare_convolution_fusion_create`) assumes that, with dynamic
shapes, a convolution whose input layout is contiguous writes a contiguous output. That holds for float
convolutions (no weight prepacking with dynamic shapes), but the INT8 kernel always has a prepacked weight and
writes channels-last. A (B, 1, H, W) input is contiguous whatever its memory format (the stride of a size-1
dimension is ignored), so inductor expects (C*H*W, H*W, W, 1) strides and the kernel returns (C*H*W, 1, W*C, C).
With two input channels the input is laid out channels-last, inductor expects channels-last, and they agree.
A static batch also compiles (no dynamic shapes), but then every new batch size compiles again.

The pad is exact: the added channel holds zeros, quantizes to the zero point (u8 code z, dequantized 0.0), and
meets weight codes of 0, so every int32 sum, and every output code, is what the one-channel convolution gives.
The cost is the stem convolution reading twice the (one-channel) input.
"""

from __future__ import annotations

import torch

from quantlens.backends.pt2e.graph import attribute, module_path
from quantlens.nn.wrapper import QuantWrapper

_CONVS = (torch.ops.aten.conv2d.default,)  # the INT8 convolution checked to fail (conv1d/conv3d: not checked)


def pad_single_channel_convs(gm: torch.fx.GraphModule, wrappers: dict[str, QuantWrapper]) -> list[str]:
    """In an exported graph (before `prepare_pt2e`), feed every conv2d of a quantlens layer that quantizes its input
    and reads one input channel from `constant_pad_nd(x, (0, 0, 0, 0, 0, 1))` with a weight of one more, all-zero,
    input channel. Returns the module paths of the layers changed."""
    changed = []
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in _CONVS:
            continue
        path = module_path(node)
        wrapper = wrappers.get(path)
        x, w = node.args[0], node.args[1]
        val = x.meta.get("val") if isinstance(x, torch.fx.Node) else None
        if (wrapper is None or not wrapper.input_quantizers or val is None or val.dim() != 4 or val.shape[1] != 1
                or not isinstance(w, torch.fx.Node) or w.op != "get_attr"):
            continue
        weight = attribute(gm, w.target).detach()  # (C_out, 1, kH, kW)
        padded = torch.cat([weight, torch.zeros_like(weight)], dim=1)  # (C_out, 2, kH, kW)
        name = f"quantlens_channel_padded_weight_{len(changed)}"
        gm.register_buffer(name, padded)
        pad = [0, 0, 0, 0, 0, 1]  # (W left, W right, H top, H bottom, C front, C back)
        with gm.graph.inserting_before(node):
            weight_node = gm.graph.get_attr(name)
            weight_node.meta["val"] = val.fake_mode.from_tensor(padded)
            pad_node = gm.graph.call_function(torch.ops.aten.constant_pad_nd.default, (x, pad, 0.0))
            with val.fake_mode:
                pad_node.meta["val"] = torch.ops.aten.constant_pad_nd.default(val, pad, 0.0)  # (B, 2, H, W)
        node.update_arg(0, pad_node)
        node.update_arg(1, weight_node)
        changed.append(path)
    if changed:
        gm.graph.eliminate_dead_code()
        gm.graph.lint()
        gm.recompile()
    return changed


def split_padding(codes: torch.Tensor, in_channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(the layer's weight as quantlens holds it: the first `in_channels` input channels, the added channels).
    codes: (C_out, C_in, ...) as the converted graph holds it; a linear's (out, in) weight is never padded."""
    if codes.dim() < 3 or codes.shape[1] <= in_channels:
        return codes, codes[:0]
    return codes[:, :in_channels], codes[:, in_channels:]
