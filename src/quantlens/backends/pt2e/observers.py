"""Put quantlens's params on every tensor pt2e's quantizer observes, and reconcile where the two disagree.

`X86InductorQuantizer` decides which tensors get an observer; quantlens's recipe decides which tensors are
quantized and with what. After `prepare_pt2e`, every observer is replaced by a fixed one:

  observer on the input i of a quantlens layer (matched by the `nn_module_stack` module path)  -> that input
      quantizer's params ("quantlens")
  observer on a conv/linear weight -> quantlens's per-channel weight scales (the exported weight is already the
      simulation's fake-quantized weight, so the folded int8 weight equals quantlens's codes)
  observer pt2e shares with one of those (SharedQuantizationSpec: pooling and flatten run int8-in/int8-out) whose
      consumer commutes with quantization -> the same quantlens params ("quantlens (shared with ...)")
  observer with no quantlens params at all -> removed: that tensor stays float ("float"); nothing is calibrated
  quantlens quantizer where pt2e put no observer (e.g. the conv output feeding a residual add) -> a fixed
      observer is inserted there ("quantlens (inserted)"), so the deployed model quantizes what the simulation
      quantizes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from quantlens.backends.pt2e.api import TorchaoApi
from quantlens.backends.pt2e.graph import is_observer, module_path, op_name
from quantlens.backends.pt2e.params import FixedParams, fixed_observer
from quantlens.nn.wrapper import QuantWrapper


class QuantizedTensor(NamedTuple):
    """One tensor the deployed model quantizes (or, for source 'float', leaves float where pt2e wanted int8).

    scale: float (per tensor) or tuple (per channel); zero_point: in the runtime's codes (u8 for activations);
    source: 'quantlens' (its quantizer's params), 'quantlens (shared with ...)' (a pt2e-only observer that pt2e
    shares with a quantlens one), 'quantlens (inserted)' (pt2e had no observer there), 'float' (pt2e's observer,
    no quantlens params: removed, the tensor is not quantized)."""

    tensor: str
    scale: float | tuple[float, ...] | None
    zero_point: int | tuple[int, ...] | None
    source: str


class _Edge(NamedTuple):
    user: torch.fx.Node
    pos: int


class _Serve(NamedTuple):
    params: FixedParams
    edges: list[_Edge]
    wheres: list[str]  # quantlens quantizers served ([] for a pt2e-only observer sharing their params)


# Operations that commute with quantization at one scale (q(f(x)) == f(q(x)) for any x): a pt2e-only observer
# in front of one of them may take the params of the quantlens quantizer right after it, exactly.
_EXACT_OPS = frozenset({"max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "flatten", "view",
                        "reshape", "_unsafe_view", "permute", "squeeze", "unsqueeze", "transpose", "clone",
                        "contiguous", "relu", "relu_"})
_MAX_DEPTH = 8  # how many such operations a shared observer may look through


def _edges(node: torch.fx.Node) -> list[_Edge]:
    return [_Edge(user, pos) for user in node.users for pos, arg in enumerate(user.args) if arg is node]


def _describe_edge(edge: _Edge) -> str:
    return f"{module_path(edge.user) or edge.user.name} ({op_name(edge.user.target)}) input {edge.pos}"


def _wanted(edge: _Edge, wrappers: dict[str, QuantWrapper], params: dict[str, FixedParams],
            observer_input: torch.fx.Node) -> FixedParams | None:
    """The quantlens params of the tensor flowing along this edge into a quantlens layer, if any."""
    path = module_path(edge.user)
    wrapper = wrappers.get(path)
    if wrapper is None:
        return None
    if observer_input.op == "get_attr":  # a parameter: the layer's quantized weight
        return params.get(f"{path} weight") if edge.pos == 1 and "weight" in wrapper.param_quantizers else None
    if module_path(observer_input) == path and observer_input.op != "placeholder":
        return None  # produced inside the layer: not one of its inputs
    return params.get(f"{path} input {edge.pos}")


def _downstream(api: TorchaoApi, gm: torch.fx.GraphModule, edge: _Edge, wanted: dict[_Edge, FixedParams | None],
                depth: int = 0) -> FixedParams | None:
    """The quantlens params a pt2e-only edge can take exactly: its consumer commutes with quantization and every
    use of its result is (through more such operations) quantized by quantlens with the same params."""
    if depth > _MAX_DEPTH or op_name(edge.user.target) not in _EXACT_OPS or edge.pos != 0:
        return None
    found: set[tuple] = set()
    result = None
    for user in edge.user.users:
        if not is_observer(api, gm, user):
            return None  # a use that is not quantized: quantizing earlier would change it
        for e in _edges(user):
            p = wanted.get(e)
            p = p if p is not None else _downstream(api, gm, e, wanted, depth + 1)
            if p is None:
                return None
            found.add(p.key())
            result = p
    return result if len(found) == 1 else None


def _layer_entry(api: TorchaoApi, gm: torch.fx.GraphModule, path: str, index: int) -> torch.fx.Node | None:
    """The first node of layer `path` whose argument `index` comes from outside the layer."""
    for node in gm.graph.nodes:
        if node.op != "call_function" or module_path(node) != path or len(node.args) <= index:
            continue
        arg = node.args[index]
        if not isinstance(arg, torch.fx.Node):
            continue
        source = arg.args[0] if is_observer(api, gm, arg) else arg
        if source.op == "placeholder" or module_path(source) != path:
            return node
    return None


def _has_weight_observer(api: TorchaoApi, gm: torch.fx.GraphModule, path: str) -> bool:
    return any(is_observer(api, gm, n) and n.args[0].op == "get_attr" and
               any(module_path(u) == path for u in n.users) for n in gm.graph.nodes)


def override_observers(api: TorchaoApi, gm: torch.fx.GraphModule, wrappers: dict[str, QuantWrapper],
                       params: dict[str, FixedParams]) -> tuple[list[QuantizedTensor], list[str]]:
    """Replace every observer pt2e inserted by a fixed one (quantlens's params); split, remove or insert observers
    where pt2e and quantlens disagree about which tensors are quantized. Returns (tensors, notes)."""
    graph = gm.graph
    counter = iter(range(1_000_000))

    def add_observer(p: FixedParams) -> str:
        name = f"quantlens_observer_{next(counter)}"
        gm.add_module(name, fixed_observer(api, p))
        return name

    observers = [n for n in graph.nodes if is_observer(api, gm, n)]
    wanted = {e: _wanted(e, wrappers, params, node.args[0]) for node in observers for e in _edges(node)}
    plans: dict[torch.fx.Node, tuple[list[_Serve], list[_Edge]]] = {}
    for node in observers:  # decided on the graph pt2e prepared, before anything changes
        serves: dict[tuple, _Serve] = {}
        left_float: list[_Edge] = []
        for e in _edges(node):
            p = wanted[e]
            if p is not None:
                serve = serves.setdefault(p.key(), _Serve(p, [], []))
                serve.edges.append(e)
                serve.wheres.append(p.where)
                continue
            p = _downstream(api, gm, e, wanted)
            if p is None:
                left_float.append(e)
            else:
                serves.setdefault(p.key(), _Serve(p, [], [])).edges.append(e)
        plans[node] = (list(serves.values()), left_float)

    tensors: list[QuantizedTensor] = []
    notes: list[str] = []
    for node, (serves, left_float) in plans.items():
        source = node.args[0]
        for e in left_float:
            e.user.update_arg(e.pos, source)
            if source.op == "get_attr":
                notes.append(f"{_describe_edge(e)}: pt2e's quantizer quantizes this weight, quantlens does not: "
                             "left float")
                continue
            tensors.append(QuantizedTensor(_describe_edge(e), None, None, "float"))
            notes.append(f"{_describe_edge(e)}: pt2e's quantizer quantizes it; quantlens gives no params that "
                         "apply exactly here: left float (nothing is calibrated)")
        wheres = [w for s in serves for w in s.wheres]
        if len(serves) > 1 and all(s.wheres for s in serves):
            notes.append(f"{', '.join(wheres)}: one tensor, different quantlens params: a separate "
                         "quantize/dequantize pair for each")
        for k, serve in enumerate(serves):
            if k == 0:
                gm.add_module(node.target, fixed_observer(api, serve.params))  # replaces pt2e's observer
            else:
                with graph.inserting_after(node):
                    new = graph.call_module(add_observer(serve.params), (source,))
                for e in serve.edges:
                    e.user.update_arg(e.pos, new)
            if serve.params.dtype == torch.int8:
                continue  # a weight: checked and reported by verify_converted
            scale, zp = serve.params.scalar()
            tensors.extend(QuantizedTensor(w, scale, zp, "quantlens") for w in dict.fromkeys(serve.wheres))
            tensors.extend(QuantizedTensor(_describe_edge(e), scale, zp, f"quantlens (shared with "
                                           f"{serve.params.where})") for e in serve.edges if wanted[e] is None)
        if not serves:
            graph.erase_node(node)
    # quantlens quantizers pt2e put no observer in front of
    covered = {t.tensor for t in tensors if t.source == "quantlens"}
    for name, wrapper in wrappers.items():
        for i in range(len(wrapper.input_quantizers)):
            where = f"{name} input {i}"
            if where in covered:
                continue
            entry = _layer_entry(api, gm, name, i)
            if entry is None:
                notes.append(f"{where}: not located in the exported graph: runs float")
                continue
            p = params[where]
            with graph.inserting_before(entry):
                obs = graph.call_module(add_observer(p), (entry.args[i],))
            entry.update_arg(i, obs)
            scale, zp = p.scalar()
            tensors.append(QuantizedTensor(where, scale, zp, "quantlens (inserted)"))
            notes.append(f"{where}: pt2e's quantizer leaves it float; quantized with quantlens's params")
        if wrapper.output_quantizer is not None:
            notes.append(f"{name} output: output quantizers are not deployed (runs float)")
        if "weight" in wrapper.param_quantizers and not _has_weight_observer(api, gm, name):
            notes.append(f"{name} weight: pt2e's quantizer does not quantize this layer's weight: its fake-quantized "
                         "values run in float")
    graph.lint()
    gm.recompile()
    return tensors, notes
