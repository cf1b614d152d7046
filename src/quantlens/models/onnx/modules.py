"""Make onnx2torch's graph what quantlens's passes and exporters expect, without changing what it computes.

* Add, Mul and MatMul nodes become `quantlens.nn.ops` modules, which the layer registry knows: residual
  adds and products are quantized as in zoo models, without relying on an fx trace of the graph.
* Reshape, Slice and Pad whose shape, starts, ends, axes, steps, pads and fill value are constants
  become modules holding those numbers as Python numbers. onnx2torch's own read them from tensors at
  every call (`torch.any(shape == 0)`, `.numpy()`, `pads.tolist()`), which torch.export -- hence every
  ONNX export of the model, quantized or not -- cannot follow, and which torch.fx cannot trace.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn


class StaticReshape(nn.Module):
    """ONNX Reshape (allowzero=0) to a constant `shape`: a 0 copies the input's dimension, -1 is inferred."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.reshape(x, [x.shape[i] if s == 0 else s for i, s in enumerate(self.shape)])

    def extra_repr(self) -> str:
        return f"shape={list(self.shape)}"


class StaticSlice(nn.Module):
    """ONNX Slice with constant starts, ends, axes and positive steps: basic indexing with tuples built once
    (Python's slice clamping is ONNX's for positive steps), one for non-negative axes and one, after an
    Ellipsis, for negative ones, so that neither the input's rank nor a tensor is read when it runs."""

    def __init__(self, starts, ends, axes, steps) -> None:
        super().__init__()
        parts = zip(axes, starts, ends, steps, strict=True)
        self.parts = tuple((int(a), int(s), int(e), int(t)) for a, s, e, t in parts)  # (axis, start, end, step)
        by_axis = {a: slice(s, e, t) for a, s, e, t in self.parts}
        front = [a for a in by_axis if a >= 0]
        back = [a for a in by_axis if a < 0]
        self.front = tuple(by_axis.get(a, slice(None)) for a in range(max(front) + 1)) if front else ()
        self.back = (Ellipsis, *(by_axis.get(a, slice(None)) for a in range(min(back), 0))) if back else ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.front:
            x = x[self.front]
        if self.back:
            x = x[self.back]
        return x

    def extra_repr(self) -> str:
        return ", ".join(f"axis {a}: {s}:{e}:{t}" for a, s, e, t in self.parts)


class StaticPad(nn.Module):
    """ONNX Pad with constant pads (ONNX order: every axis's begin, then every axis's end) and fill value.
    `mode` is torch's: constant, reflect, or replicate (ONNX's edge)."""

    def __init__(self, onnx_pads, mode: str, value: float) -> None:
        super().__init__()
        half = len(onnx_pads) // 2
        pairs = list(zip(onnx_pads[:half], onnx_pads[half:], strict=True))[::-1]  # last axis first, as F.pad
        while pairs and pairs[-1] == (0, 0):  # unpadded leading axes (batch, channels) need no entry
            pairs.pop()
        self.pads = tuple(int(v) for pair in pairs for v in pair)
        self.mode = mode
        self.value = float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "constant":
            return F.pad(x, self.pads, mode="constant", value=self.value)
        return F.pad(x, self.pads, mode=self.mode)

    def extra_repr(self) -> str:
        fill = f", value={self.value}" if self.mode == "constant" else ""
        return f"pads={list(self.pads)}, mode={self.mode}{fill}"


def _constant(module: fx.GraphModule, arg) -> torch.Tensor | None:
    """The tensor a get_attr node holds (None for anything else)."""
    if not isinstance(arg, fx.Node) or arg.op != "get_attr":
        return None
    value = module
    for part in arg.target.split("."):
        value = getattr(value, part)
    return value if isinstance(value, torch.Tensor) else None


def _static_replacement(module: fx.GraphModule, node: fx.Node, child: nn.Module) -> nn.Module | None:
    from onnx2torch.node_converters.pad import OnnxPadDynamic
    from onnx2torch.node_converters.reshape import OnnxReshape
    from onnx2torch.node_converters.slice import OnnxSlice

    if isinstance(child, OnnxReshape) and len(node.args) == 2 and not node.kwargs:
        shape = _constant(module, node.args[1])
        return None if shape is None else StaticReshape(tuple(shape.tolist()))
    if isinstance(child, OnnxSlice):
        names = ("starts", "ends", "axes", "steps")
        given = dict(zip(names, node.args[1:], strict=False)) | dict(node.kwargs)
        values = {name: _constant(module, given[name]) for name in given}
        if any(v is None for v in values.values()) or "starts" not in values or "ends" not in values:
            return None
        starts, ends = values["starts"].tolist(), values["ends"].tolist()
        axes = values["axes"].tolist() if "axes" in values else list(range(len(starts)))
        steps = values["steps"].tolist() if "steps" in values else [1] * len(starts)
        return StaticSlice(starts, ends, axes, steps) if all(t > 0 for t in steps) else None
    if isinstance(child, OnnxPadDynamic) and not node.kwargs and len(node.args) in (2, 3):
        pads = _constant(module, node.args[1])
        value = _constant(module, node.args[2]) if len(node.args) == 3 else torch.zeros(())
        if pads is None or value is None or value.numel() != 1:
            return None
        pad = StaticPad(pads.tolist(), child.mode, value.item())
        if pad.mode != "constant" and len(pad.pads) > 6:  # torch reflects / replicates at most 3 trailing axes
            return None
        return pad
    return None


def simplify(module: fx.GraphModule) -> dict[str, int]:
    """Swap modules in place (see the module docstring); how many of each kind were swapped."""
    from onnx2torch.node_converters.binary_math_operations import OnnxBinaryMathOperation
    from onnx2torch.node_converters.matmul import OnnxMatMul

    from quantlens.nn.ops import Add, MatMul, Mul

    arithmetic = {torch.add: Add, torch.mul: Mul}
    counts: dict[str, int] = {}
    for node in list(module.graph.nodes):
        if node.op != "call_module":
            continue
        child = module.get_submodule(node.target)
        replacement = None
        if isinstance(child, OnnxBinaryMathOperation) and not (child.broadcast == 1 and child.axis is not None):
            kind = arithmetic.get(child.math_op_function)
            replacement = None if kind is None else kind()
        elif isinstance(child, OnnxMatMul):
            replacement = MatMul()
        else:
            replacement = _static_replacement(module, node, child)
            if replacement is not None:  # its constants are held by the module now
                node.args, node.kwargs = node.args[:1], {}
        if replacement is not None:
            module.add_submodule(node.target, replacement)
            counts[type(replacement).__name__] = counts.get(type(replacement).__name__, 0) + 1
    module.graph.eliminate_dead_code()
    module.graph.lint()
    module.recompile()
    return counts
