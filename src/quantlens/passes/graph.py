"""torch.fx helpers shared by the graph passes (BN folding, cross-layer equalisation).

The passes trace a model only to *read* its data flow (which module's output feeds which); they
then edit a deep copy of the original model by module name, so the result keeps its class, its
`forward` and every layer name (`layer1.0.conv1`) that recipes select layers by.

The second half serves the data-driven passes on quantized models: the order in which wrappers
run, and the input one wrapper's layer computes with, captured by a hook that stops the forward.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import fx, nn

from quantlens.errors import describe
from quantlens.nn.registry import kind_of
from quantlens.nn.wrapper import QuantWrapper

# layers whose weight rows are output channels: (O, I/groups, *kernel) or (O, I)
WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)


class LayerTracer(fx.Tracer):
    """Keeps every quantizable layer (and every QuantWrapper) as one call_module node."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return (isinstance(module, QuantWrapper) or kind_of(module) is not None
                or super().is_leaf_module(module, qualified_name))


def trace(model: nn.Module) -> tuple[fx.Graph | None, str | None]:
    """(graph, None), or (None, why it could not be traced). Traced in eval mode, so that Python
    branches on `self.training` are baked in as their inference form; the mode is restored."""
    was_training = model.training
    model.eval()
    try:
        return LayerTracer().trace(model), None
    except Exception as exc:  # noqa: BLE001 - any tracing failure: the caller reports it
        return None, f"not traceable by torch.fx ({describe(exc)})"
    finally:
        model.train(was_training)


def module_calls(graph: fx.Graph) -> dict[str, list[fx.Node]]:
    """Module name -> the call_module nodes that call it (more than one: a shared module)."""
    calls: dict[str, list[fx.Node]] = defaultdict(list)
    for node in graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)].append(node)
    return calls


def only_user(node: fx.Node) -> fx.Node | None:
    """The single node that consumes `node`'s output, or None when there are several (or none)."""
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def is_relu(node: fx.Node, model: nn.Module) -> bool:
    """A plain ReLU (module, function or method): positively homogeneous, relu(a x) = a relu(x), a > 0."""
    if node.op == "call_module":
        return type(model.get_submodule(str(node.target))) is nn.ReLU
    if node.op == "call_function":
        return node.target in (F.relu, F.relu_) or getattr(node.target, "__name__", "") in ("relu", "relu_")
    return node.op == "call_method" and node.target in ("relu", "relu_")


def called_module(node: fx.Node, model: nn.Module) -> nn.Module | None:
    return model.get_submodule(str(node.target)) if node.op == "call_module" else None


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


# --- layer inputs inside a quantized model (bias correction, AdaRound) -------------------------


class _Stop(Exception):
    """Raised by a hook once it has what it needs: the rest of the forward is skipped."""


def layer_kind_ok(wrapper: QuantWrapper) -> bool:
    """A wrapped Conv1d/Conv2d/Linear whose weight is quantized (what the data passes work on)."""
    return type(wrapper.module) in WEIGHT_LAYERS and "weight" in wrapper.param_quantizers


def execution_order(model: nn.Module, batch: torch.Tensor) -> list[str]:
    """Names of the QuantWrappers in the order one forward pass first calls them."""
    order: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, QuantWrapper):
            def hook(_module, _args, name=name):
                if name not in order:
                    order.append(name)
            handles.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for h in handles:
            h.remove()
    return order


def quantized_input(wrapper: QuantWrapper, x: torch.Tensor) -> torch.Tensor:
    """The wrapper's first input as its layer computes with it: through its input quantizer, if any."""
    return wrapper.input_quantizers[0](x) if len(wrapper.input_quantizers) else x


def each_layer_input(model: nn.Module, wrapper: QuantWrapper, batches: Iterable[torch.Tensor],
                     device: torch.device) -> Iterator[torch.Tensor]:
    """For each batch, the (quantized) input `wrapper`'s layer computes with, in this model as it is
    now; the forward stops at the layer, so upstream layers run once per batch and nothing after."""
    seen: list[torch.Tensor] = []

    def hook(_module, args):
        seen.append(quantized_input(wrapper, args[0]).detach())
        raise _Stop

    handle = wrapper.register_forward_pre_hook(hook)
    try:
        for batch in batches:
            seen.clear()
            try:
                with torch.no_grad():
                    model(batch.to(device))
            except _Stop:
                pass
            if seen:
                yield seen[0]
    finally:
        handle.remove()
