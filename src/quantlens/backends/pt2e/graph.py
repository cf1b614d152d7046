"""Reading pt2e graphs: which module a node was traced in, observers, quantize nodes, folded int8 weights."""

from __future__ import annotations

import functools
from typing import Any

import torch

from quantlens.backends.pt2e.api import TorchaoApi

_Q_OPS = ("quantize_per_tensor", "quantize_per_channel")


def module_path(node: torch.fx.Node) -> str | None:
    """The innermost module a node was traced in ('layer1.0.conv1'), from `nn_module_stack`."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return None
    path = list(stack.values())[-1][0]
    return path if isinstance(path, str) else None


def op_name(target) -> str:
    """'conv2d' for torch.ops.aten.conv2d.default, 'quantize_per_tensor' for quantized_decomposed's op."""
    name = getattr(target, "__name__", str(target))
    return name.split(".")[0]


def attribute(gm: torch.nn.Module, target: str) -> Any:
    """The tensor or module a get_attr target ('features.0.0.weight', '_frozen_param3') names."""
    return functools.reduce(getattr, target.split("."), gm)


def is_observer(api: TorchaoApi, gm: torch.fx.GraphModule, node: torch.fx.Node) -> bool:
    return node.op == "call_module" and isinstance(gm.get_submodule(node.target), api.ObserverBase)


def quantize_nodes(gm: torch.fx.GraphModule) -> list[dict[str, Any]]:
    """Every activation quantize node of a converted pt2e graph: its scale, zero point, dtype and the
    (module path, op, argument position) of the operations that read its dequantized value."""
    found = []
    for node in gm.graph.nodes:
        if node.op != "call_function" or op_name(node.target) not in _Q_OPS:
            continue
        if node.args[0].op == "get_attr":  # an unfolded weight
            continue
        consumers = []
        for dq in node.users:
            for user in dq.users:
                for pos, arg in enumerate(user.args):
                    if arg is dq:
                        consumers.append((module_path(user), op_name(user.target), pos))
        scale, zp = node.args[1], node.args[2]
        if isinstance(scale, torch.fx.Node):
            scale, zp = attribute(gm, scale.target), attribute(gm, zp.target)
        found.append({"node": node.name, "scale": scale, "zero_point": zp, "dtype": node.args[-1],
                      "consumers": consumers})
    return found


def weight_codes(gm: torch.fx.GraphModule) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """module path -> (int8 weight constant, per-channel scale) of each dequantize_per_channel on a folded weight.
    The constant is what the graph holds: a layer whose single input channel was padded (see channel_pad) has
    one more input channel, of zeros."""
    found = {}
    for node in gm.graph.nodes:
        if node.op != "call_function" or op_name(node.target) != "dequantize_per_channel":
            continue
        src = node.args[0]
        if src.op != "get_attr":
            continue
        scale = node.args[1]
        scale = attribute(gm, scale.target) if isinstance(scale, torch.fx.Node) else scale
        for user in node.users:
            path = module_path(user)
            if path is not None:
                found[path] = (attribute(gm, src.target), scale)
    return found


def prune_unused_attributes(gm: torch.fx.GraphModule) -> int:
    """Delete parameters and buffers no get_attr node reads (convert_pt2e keeps the float weights it folded into
    int8 constants); returns the bytes freed. Keeps a saved program to what the deployed graph uses."""
    used = {node.target for node in gm.graph.nodes if node.op == "get_attr"}
    freed = 0
    names = [name for name, _ in gm.named_parameters(remove_duplicate=False)] + \
        [name for name, _ in gm.named_buffers(remove_duplicate=False)]
    for name in names:
        if name in used:
            continue
        owner_path, _, leaf = name.rpartition(".")
        owner = gm.get_submodule(owner_path) if owner_path else gm
        tensor = getattr(owner, leaf, None)
        if not isinstance(tensor, torch.Tensor):
            continue
        freed += tensor.numel() * tensor.element_size()
        delattr(owner, leaf)
    gm.delete_all_unused_submodules()
    return freed
