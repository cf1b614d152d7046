"""Give the functional operations of a user's model a module each, so they can be quantized.

Module wrappers only see modules. A model written as `x + self.branch(x)` or
`torch.matmul(q, k)` would keep its residual adds and attention matmuls in float. This pass
traces the model with torch.fx and replaces each such call between two tensors with a call to a
new module (`Add`, `Mul`, `MatMul`, `nn.ReLU`, `nn.Softmax`, ...), named after the operation and
its position, e.g. `fx_add_3`. Models that torch.fx cannot trace (data-dependent control flow)
are returned unchanged with the reason, so the coverage report can say what stayed in float.
The converted copy is traced in eval mode and is meant for inference (simulation, deployment).
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from quantlens.errors import describe
from quantlens.nn.ops import Add, MatMul, Mul
from quantlens.nn.registry import kind_of

_BINARY: dict[Callable, type[nn.Module]] = {
    operator.add: Add, torch.add: Add, operator.iadd: Add,
    operator.mul: Mul, torch.mul: Mul, operator.imul: Mul,
    operator.matmul: MatMul, torch.matmul: MatMul, torch.bmm: MatMul,
}
_UNARY: dict[Callable, Callable[[], nn.Module]] = {
    F.relu: nn.ReLU, torch.relu: nn.ReLU, F.relu6: nn.ReLU6, F.gelu: nn.GELU, F.silu: nn.SiLU,
    F.hardswish: nn.Hardswish, torch.sigmoid: nn.Sigmoid, F.sigmoid: nn.Sigmoid, torch.tanh: nn.Tanh,
    F.tanh: nn.Tanh,
}
_SOFTMAX = (F.softmax, torch.softmax)
_METHODS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "softmax": None, "matmul": MatMul,
            "add": Add, "mul": Mul}


@dataclass
class ModularizeResult:
    model: nn.Module
    converted: Counter = field(default_factory=Counter)  # operation -> count
    skipped: str | None = None  # why the model was left as it was

    def to_dict(self) -> dict:
        return {"converted": dict(self.converted), "skipped": self.skipped}


def _is_tensor_arg(arg) -> bool:
    return isinstance(arg, fx.Node)


def _module_for(node: fx.Node) -> tuple[nn.Module, str, tuple] | None:
    """(module, operation name, tensor arguments) when `node` is a convertible operation."""
    target, args, kwargs = node.target, node.args, node.kwargs
    if node.op == "call_method":
        if target not in _METHODS:
            return None
        if target == "softmax":
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            return (nn.Softmax(dim=dim), "softmax", args[:1]) if isinstance(dim, int) and not kwargs.keys() - {"dim"} \
                else None
        if kwargs:
            return None
        if _METHODS[target] in (Add, Mul, MatMul):
            return (_METHODS[target](), target, args[:2]) if len(args) == 2 and all(map(_is_tensor_arg, args)) \
                else None
        return (_METHODS[target](), target, args[:1]) if len(args) == 1 else None
    if node.op != "call_function":
        return None
    if target in _BINARY and not kwargs and len(args) == 2 and all(map(_is_tensor_arg, args)):
        return _BINARY[target](), _BINARY[target].__name__.lower(), args
    if target in _UNARY and len(args) == 1 and not kwargs.keys() - {"inplace"}:
        return _UNARY[target](), _UNARY[target].__name__.lower(), args
    if target in _SOFTMAX:
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        if isinstance(dim, int) and not kwargs.keys() - {"dim"}:
            return nn.Softmax(dim=dim), "softmax", args[:1]
    return None


class _Tracer(fx.Tracer):
    """Keeps every quantizable layer (the zoo's Add/MatMul modules included) as one call_module node."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return kind_of(module) is not None or super().is_leaf_module(module, qualified_name)


def functional_to_modules(model: nn.Module) -> ModularizeResult:
    """A copy of `model` whose functional operations between tensors are modules (or `model` itself)."""
    # torch.fx bakes Python branches into the graph: trace in eval mode so that training-only
    # branches (stochastic depth, dropout paths written as code) are the evaluation ones.
    was_training = model.training
    model.eval()
    try:
        graph_module = fx.GraphModule(model, _Tracer().trace(model), model.__class__.__name__)
    except Exception as exc:  # noqa: BLE001 - any tracing failure means: leave the model as it is, say why
        return ModularizeResult(model, skipped=f"not traceable by torch.fx ({describe(exc)})")
    finally:
        model.train(was_training)
    converted: Counter = Counter()
    for node in list(graph_module.graph.nodes):
        found = _module_for(node)
        if found is None:
            continue
        module, op, tensor_args = found
        name = f"fx_{op}_{converted[op]}"
        converted[op] += 1
        graph_module.add_module(name, module)
        with graph_module.graph.inserting_after(node):
            replacement = graph_module.graph.call_module(name, args=tuple(tensor_args))
        node.replace_all_uses_with(replacement)
        graph_module.graph.erase_node(node)
    if not converted:
        return ModularizeResult(model)
    graph_module.graph.lint()
    graph_module.recompile()
    return ModularizeResult(graph_module, converted)
