"""quantlens's calibrated INT8 model on PyTorch x86 through torchao's pt2e flow and inductor.

    deployment = pt2e_model(qmodel, example_input)        # never re-calibrates
    logits = deployment.run(batch)                        # compiled, INT8 oneDNN kernels
    deployment.tensors                                    # (tensor, scale, zero_point, source) per quantized tensor
    check_pt2e(deployment, qmodel, batches)               # top-1 / logit agreement with the simulation

How: the float model the simulation computes (each QuantWrapper's module with its fake-quantized weight) is
exported with `torch.export` (dynamic batch axis), prepared with torchao's `prepare_pt2e` and
`X86InductorQuantizer` (static, u8 activations, s8 per-channel weights). Instead of calibrating, every observer
the quantizer inserted is replaced by a fixed one holding quantlens's scale and zero point:

  observer on the input i of a quantlens layer (matched by the `nn_module_stack` module path)  -> that input
      quantizer's params (int8_asym codes with zero point z become u8 codes with zero point z + 128; same scale)
  observer on a conv/linear weight -> quantlens's per-channel scales (s8, zero point 0); the exported weight is
      already the simulation's fake-quantized weight, so the folded int8 weight equals quantlens's codes
      (checked exactly after `convert_pt2e`)
  observer pt2e shares with one of those (SharedQuantizationSpec: pooling and flatten run int8-in/int8-out)
      -> the same quantlens params ("quantlens (shared ...)")
  observer with no quantlens params at all -> removed: that tensor stays float ("float"); nothing is calibrated
  quantlens quantizer where pt2e put no observer (e.g. the conv output feeding a residual add) -> a fixed
      observer is inserted there ("quantlens (inserted)"), so the deployed model quantizes what the simulation
      quantizes.

`convert_pt2e` then writes quantize/dequantize nodes from these fixed params, and `torch.compile` (inductor,
`torch._inductor.config.freezing = True` for the call only) fuses them into oneDNN INT8 convolutions and
matrix products. Biases stay float32 in both the simulation and the deployment.

Formats PyTorch x86 cannot run are refused with a one-line BackendError: anything but 8-bit integer activations
and <= 8-bit signed symmetric integer weights, per-block scales, dynamic ranges, stochastic rounding, quantized
normalisation parameters. torchao's import-time and torch.ao deprecation warnings (and its log lines about
CUDA-only libraries) are kept out of the user's output; process-wide settings are restored.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from quantlens.backends.base import BackendError, MissingPackageError, check_integer_kernel_spec
from quantlens.errors import describe
from quantlens.formats import IntFormat
from quantlens.nn.wrapper import QuantWrapper
from quantlens.scaling import PerChannel, PerTensor, quantize

SKIP_SO_ENV = "TORCHAO_FORCE_SKIP_LOADING_SO_FILES"
_QUIET_LOGGERS = ("torchao", "torch.utils._pytree", "torch._dynamo", "torch._inductor", "torch.export",
                  "torch._export")
_DENSE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_Q_OPS = ("quantize_per_tensor", "quantize_per_channel")


# ----------------------------------------------------------------------------------------------- quiet imports


@contextlib.contextmanager
def quiet_torchao() -> Iterator[None]:
    """No warnings, no torchao/torch log lines below ERROR, torchao's CUDA-only libraries not loaded; the
    warning filters, logger levels and the environment variable are restored afterwards."""
    previous_env = os.environ.get(SKIP_SO_ENV)
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    os.environ[SKIP_SO_ENV] = "1"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for lg in loggers:
                lg.setLevel(logging.ERROR)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if previous_env is None:
            os.environ.pop(SKIP_SO_ENV, None)
        else:
            os.environ[SKIP_SO_ENV] = previous_env


def _torchao() -> Any:
    """torchao's pt2e entry points (imported quietly), or MissingPackageError naming the install command."""
    with quiet_torchao():
        try:
            from torchao.quantization.pt2e import ObserverBase
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
            from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86
        except ImportError as error:
            raise MissingPackageError("PyTorch x86 pt2e deployment needs the Python package 'torchao' (>= 0.18), "
                                      f"which cannot be imported ({describe(error)}); install it with: "
                                      "pip install 'quantlens[torchao]'") from error

    class _Api:
        pass

    api = _Api()
    api.ObserverBase, api.convert_pt2e, api.prepare_pt2e, api.x86 = ObserverBase, convert_pt2e, prepare_pt2e, x86
    return api


def torchao_available() -> bool:
    try:
        _torchao()
    except MissingPackageError:
        return False
    return True


# ----------------------------------------------------------------------------------------------- formats


def _simulation_only(where: str, what: str) -> BackendError:
    return BackendError(f"{where}: {what} is simulation only on PyTorch x86 (pt2e INT8 supports 8-bit integer "
                        "activations and <= 8-bit signed symmetric integer weights)")


def _check_spec(spec, where: str) -> None:
    check_integer_kernel_spec(spec, where, "PyTorch x86 INT8 form", "PyTorch x86 quantize")


def activation_offset(fmt, where: str) -> int:
    """The offset from quantlens's codes to u8 codes: 0 for unsigned 8-bit, 128 for signed 8-bit."""
    if isinstance(fmt, IntFormat) and fmt.bits == 8:
        return 128 if fmt.signed else 0
    raise _simulation_only(where, getattr(fmt, "name", str(fmt)))


def check_weight_format(fmt, where: str) -> None:
    if isinstance(fmt, IntFormat) and fmt.bits <= 8 and fmt.signed and fmt.symmetric:
        return
    name = getattr(fmt, "name", str(fmt))
    if isinstance(fmt, IntFormat) and fmt.bits <= 8:
        name += " (asymmetric or unsigned: x86 INT8 weights are s8 with zero point 0)"
    raise _simulation_only(where, name)


def _validate(wrappers: list[tuple[str, QuantWrapper]]) -> None:
    """One-line BackendError for the first quantizer PyTorch x86 INT8 cannot run (formats first, then
    calibration); nothing is traced before."""
    if not wrappers:
        raise BackendError("pt2e deployment needs a quantized model (quantlens.nn.quantize_model + calibrate); "
                           "this one has no quantized layer")
    for name, wrapper in wrappers:
        for i, q in enumerate(wrapper.input_quantizers):
            activation_offset(q.spec.format, f"{name} input {i}")
            _check_spec(q.spec, f"{name} input {i}")
        if wrapper.output_quantizer is not None:
            activation_offset(wrapper.output_quantizer.spec.format, f"{name} output")
            _check_spec(wrapper.output_quantizer.spec, f"{name} output")
        for pname, pq in wrapper.param_quantizers.items():
            where = f"{name} {pname}"
            if pname != "weight" or not isinstance(wrapper.module, _DENSE):
                raise BackendError(f"{where}: quantized {type(wrapper.module).__name__}.{pname} has no PyTorch x86 "
                                   "INT8 form (fold BatchNorm into the convolution: pass fold_bn)")
            check_weight_format(pq.spec.format, where)
            _check_spec(pq.spec, where)
    for name, wrapper in wrappers:
        for i, q in enumerate(wrapper.input_quantizers):
            _check_calibrated(q, f"{name} input {i}")
        if wrapper.output_quantizer is not None:
            _check_calibrated(wrapper.output_quantizer, f"{name} output")
        for pq in wrapper.param_quantizers.values():
            where = f"{name} weight"
            params = pq.params_for(wrapper.module.weight)
            if not bool((params.zero_point == 0).all()):
                raise _simulation_only(where, f"{pq.spec.format.name} with a non-zero zero point")
            if not isinstance(params.granularity, PerTensor) and not (
                    isinstance(params.granularity, PerChannel) and params.granularity.axis in (0, -2)):
                raise BackendError(f"{where}: weight scales along axis {params.granularity.axis} have no x86 INT8 "
                                   "form (per output channel, axis 0, only)")


def _check_calibrated(q, where: str) -> None:
    if q.params is None or not q.spec.static:
        raise BackendError(f"{where}: no calibrated static range (pt2e deployment uses fixed scales: calibrate the "
                           "model; dynamic ranges are simulation only)")


# ----------------------------------------------------------------------------------------------- fixed params


@dataclass(frozen=True)
class _Params:
    """One tensor's quantization as pt2e expresses it (u8/s8 codes, float32 scale)."""

    scale: torch.Tensor  # 0-d (per tensor) or (C,)
    zero_point: torch.Tensor  # int64, like scale
    dtype: torch.dtype
    quant_min: int
    quant_max: int
    axis: int | None  # None: per tensor
    where: str  # the quantlens quantizer ('c2 input 0', 'fc weight')

    def key(self) -> tuple:
        return (self.dtype, self.axis, self.quant_min, self.quant_max, tuple(self.scale.reshape(-1).tolist()),
                tuple(self.zero_point.reshape(-1).tolist()))

    def scalar(self) -> tuple[float | tuple[float, ...], int | tuple[int, ...]]:
        if self.axis is None:
            return float(self.scale), int(self.zero_point)
        return tuple(self.scale.tolist()), tuple(int(z) for z in self.zero_point.tolist())


def _activation_params(q, where: str) -> _Params:
    fmt = q.spec.format
    offset = activation_offset(fmt, where)
    params = q.params
    if isinstance(params.granularity, PerChannel):
        axis = int(params.granularity.axis)
        scale, zp = params.scale.reshape(-1), params.zero_point.reshape(-1)
    else:
        axis = None
        scale, zp = params.scale.reshape(()), params.zero_point.reshape(())
    return _Params(scale.detach().float().clone(), zp.to(torch.int64) + offset, torch.uint8, fmt.qmin + offset,
                   fmt.qmax + offset, axis, where)


def _weight_params(pq, weight: torch.Tensor, where: str) -> _Params:
    params = pq.params_for(weight)
    out = weight.shape[0]
    scale = params.scale.reshape(-1).float().expand(out).contiguous() if params.scale.numel() == 1 \
        else params.scale.reshape(-1).float().clone()
    return _Params(scale, torch.zeros(out, dtype=torch.int64), torch.int8, -128, 127, 0, where)


def _fixed_observer(api, params: _Params) -> nn.Module:
    """A pt2e observer that observes nothing and hands `convert_pt2e` quantlens's params."""

    class QuantlensFixedObserver(api.ObserverBase):
        def __init__(self) -> None:
            super().__init__(dtype=params.dtype, is_dynamic=False)
            per_channel = params.axis is not None
            symmetric = params.dtype == torch.int8
            self.qscheme = ((torch.per_channel_symmetric if symmetric else torch.per_channel_affine) if per_channel
                            else (torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine))
            self.ch_axis = params.axis if per_channel else -1
            self.quant_min, self.quant_max = params.quant_min, params.quant_max
            self.register_buffer("scale", params.scale.clone())
            self.register_buffer("zero_point", params.zero_point.clone())
            self.quantlens_where = params.where

        def forward(self, x):
            return x

        def calculate_qparams(self, **kwargs):
            return self.scale, self.zero_point

        def extra_repr(self) -> str:
            return f"{self.quantlens_where}, fixed by quantlens"

    return QuantlensFixedObserver()


# ----------------------------------------------------------------------------------------------- result


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


@dataclass
class Pt2eDeployment:
    """The compiled INT8 model and what it quantizes with.

    run(batch) -> float32 logits (B, classes); tensors: every activation quantization the deployed graph performs
    (and pt2e observers left float); weights: layer -> output channels of its verified s8 codes (equal to
    quantlens's codes); notes: differences between pt2e's quantizer and quantlens's recipe worth knowing."""

    compiled: Callable[[torch.Tensor], torch.Tensor]
    graph_module: torch.fx.GraphModule
    tensors: list[QuantizedTensor]
    weights: dict[str, int]
    notes: list[str] = field(default_factory=list)
    export_s: float = 0.0
    compile_s: float = 0.0
    int8_kernels: dict[str, int] = field(default_factory=dict)  # inductor's INT8 lowerings ('qconv', 'qlinear')

    def run(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), quiet_torchao(), torch._inductor.config.patch(freezing=True):
            return self.compiled(batch.detach().float().cpu().contiguous())


# ----------------------------------------------------------------------------------------------- graph helpers


def module_path(node: torch.fx.Node) -> str | None:
    """The innermost module a node was traced in ('layer1.0.conv1'), from `nn_module_stack`."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return None
    path = list(stack.values())[-1][0]
    return path if isinstance(path, str) else None


def _is_observer(api, gm: torch.fx.GraphModule, node: torch.fx.Node) -> bool:
    return node.op == "call_module" and isinstance(gm.get_submodule(node.target), api.ObserverBase)


def _op_name(target) -> str:
    name = getattr(target, "__name__", str(target))
    return name.split(".")[0]


def quantize_nodes(gm: torch.fx.GraphModule) -> list[dict[str, Any]]:
    """Every activation quantize node of a converted pt2e graph: its scale, zero point, dtype and the
    (module path, op, argument position) of the operations that read its dequantized value."""
    found = []
    for node in gm.graph.nodes:
        if node.op != "call_function" or _op_name(node.target) not in _Q_OPS:
            continue
        if node.args[0].op == "get_attr":  # an unfolded weight
            continue
        consumers = []
        for dq in node.users:
            for user in dq.users:
                for pos, arg in enumerate(user.args):
                    if arg is dq:
                        consumers.append((module_path(user), _op_name(user.target), pos))
        scale, zp = node.args[1], node.args[2]
        if isinstance(scale, torch.fx.Node):
            scale, zp = getattr(gm, scale.target), getattr(gm, zp.target)
        found.append({"node": node.name, "scale": scale, "zero_point": zp, "dtype": node.args[-1],
                      "consumers": consumers})
    return found


def weight_codes(gm: torch.fx.GraphModule) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """module path -> (int8 weight constant, per-channel scale) of each dequantize_per_channel on a folded weight."""
    found = {}
    for node in gm.graph.nodes:
        if node.op != "call_function" or _op_name(node.target) != "dequantize_per_channel":
            continue
        src = node.args[0]
        if src.op != "get_attr":
            continue
        scale = node.args[1]
        scale = getattr(gm, scale.target) if isinstance(scale, torch.fx.Node) else scale
        for user in node.users:
            path = module_path(user)
            if path is not None:
                found[path] = (getattr(gm, src.target), scale)
    return found


# ----------------------------------------------------------------------------------------------- the flow


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def float_model(qmodel: nn.Module) -> nn.Module:
    """The float network the simulation computes: each QuantWrapper replaced by its module (same name) holding
    the fake-quantized weight; activations unquantized (pt2e quantizes them)."""
    target = copy.deepcopy(qmodel).eval().cpu()
    for name, wrapper in [(n, m) for n, m in target.named_modules() if isinstance(m, QuantWrapper)]:
        module = wrapper.module
        with torch.no_grad():
            for pname, pq in wrapper.param_quantizers.items():
                getattr(module, pname).copy_(pq(getattr(module, pname)).detach())
        _set_submodule(target, name, module)
    return target


def _export(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    batch = example[:2] if example.shape[0] >= 2 else example.repeat(2, *([1] * (example.dim() - 1)))
    try:
        program = torch.export.export(model, (batch,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    except Exception as error:  # export raises many types; each becomes one line
        raise BackendError(f"pt2e deployment: torch.export failed: {describe(error)}") from error
    return program.module()


class _Edge(NamedTuple):
    user: torch.fx.Node
    pos: int


def _wanted(edge: _Edge, wrappers: dict[str, QuantWrapper], params: dict[str, _Params],
            observer_input: torch.fx.Node) -> _Params | None:
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


def _layer_entry(gm: torch.fx.GraphModule, path: str, index: int, api) -> torch.fx.Node | None:
    """The first node of layer `path` whose argument `index` comes from outside the layer."""
    for node in gm.graph.nodes:
        if node.op != "call_function" or module_path(node) != path or len(node.args) <= index:
            continue
        arg = node.args[index]
        if not isinstance(arg, torch.fx.Node):
            continue
        source = arg.args[0] if _is_observer(api, gm, arg) else arg
        if source.op == "placeholder" or module_path(source) != path:
            return node
    return None


# Operations that commute with quantization at one scale (q(f(x)) == f(q(x)) for any x): a pt2e-only observer
# in front of one of them may take the params of the quantlens quantizer right after it, exactly.
_EXACT_OPS = frozenset({"max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "flatten", "view",
                        "reshape", "_unsafe_view", "permute", "squeeze", "unsqueeze", "transpose", "clone",
                        "contiguous", "relu", "relu_"})


class _Serve(NamedTuple):
    params: _Params
    edges: list[_Edge]
    wheres: list[str]  # quantlens quantizers served ([] for a pt2e-only observer sharing their params)


def _edges(node: torch.fx.Node) -> list[_Edge]:
    return [_Edge(user, pos) for user in node.users for pos, arg in enumerate(user.args) if arg is node]


def _downstream(api, gm, edge: _Edge, wanted: dict[_Edge, _Params | None], depth: int = 0) -> _Params | None:
    """The quantlens params a pt2e-only edge can take exactly: its consumer commutes with quantization and every
    use of its result is (through more such operations) quantized by quantlens with the same params."""
    if depth > 8 or _op_name(edge.user.target) not in _EXACT_OPS or edge.pos != 0:
        return None
    found: set[tuple] = set()
    result = None
    for user in edge.user.users:
        if not _is_observer(api, gm, user):
            return None  # a use that is not quantized: quantizing earlier would change it
        for e in _edges(user):
            p = wanted.get(e)
            p = p if p is not None else _downstream(api, gm, e, wanted, depth + 1)
            if p is None:
                return None
            found.add(p.key())
            result = p
    return result if len(found) == 1 else None


def _override_observers(api, gm: torch.fx.GraphModule, wrappers: dict[str, QuantWrapper],
                        params: dict[str, _Params]) -> tuple[list[QuantizedTensor], list[str]]:
    """Replace every observer pt2e inserted by a fixed one (quantlens's params); split, remove or insert observers
    where pt2e and quantlens disagree about which tensors are quantized. Returns (tensors, notes)."""
    graph = gm.graph
    counter = iter(range(1_000_000))

    def add_observer(p: _Params) -> str:
        name = f"quantlens_observer_{next(counter)}"
        gm.add_module(name, _fixed_observer(api, p))
        return name

    observers = [n for n in graph.nodes if _is_observer(api, gm, n)]
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
                gm.add_module(node.target, _fixed_observer(api, serve.params))  # replaces pt2e's observer
            else:
                with graph.inserting_after(node):
                    new = graph.call_module(add_observer(serve.params), (source,))
                for e in serve.edges:
                    e.user.update_arg(e.pos, new)
            if serve.params.dtype == torch.int8:
                continue  # a weight: checked and reported in `weights`
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
            entry = _layer_entry(gm, name, i, api)
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


def _has_weight_observer(api, gm: torch.fx.GraphModule, path: str) -> bool:
    return any(_is_observer(api, gm, n) and n.args[0].op == "get_attr" and
               any(module_path(u) == path for u in n.users) for n in gm.graph.nodes)


def _describe_edge(edge: _Edge) -> str:
    return f"{module_path(edge.user) or edge.user.name} ({_op_name(edge.user.target)}) input {edge.pos}"


def _verify(gm: torch.fx.GraphModule, wrappers: dict[str, QuantWrapper], tensors: list[QuantizedTensor],
            params: dict[str, _Params]) -> dict[str, int]:
    """Check the converted graph: each quantize node's params are one of ours; each quantized weight's s8 codes
    equal quantlens's. Returns layer -> verified output channels."""
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
        qp = pq.params_for(weight)
        expected = quantize(pq.view(weight).detach().float(), pq.spec.format, qp).reshape(weight.shape)
        got, scale = codes[name]
        if got.dtype != torch.int8 or not torch.equal(got.to(torch.float32), expected):
            diff = int((got.float() - expected).abs().max()) if got.shape == expected.shape else "shape"
            raise BackendError(f"{name} weight: pt2e's int8 weight is not quantlens's codes (max |diff| {diff}); "
                               "refused")
        if not torch.equal(torch.as_tensor(scale).float(), params[f"{name} weight"].scale):
            raise BackendError(f"{name} weight: pt2e's weight scales are not quantlens's; refused")
        verified[name] = int(weight.shape[0])
    return verified


def cpu_has_vnni() -> bool | None:
    """Whether this CPU has AVX512-VNNI (None: torch cannot tell)."""
    probe = getattr(torch.cpu, "_is_vnni_supported", None)
    try:
        return bool(probe()) if probe is not None else None
    except Exception:  # a private API: absent or failing in some builds
        return None


def saturation_risk(wrappers: dict[str, QuantWrapper]) -> list[str]:
    """A note when the deployed kernels may not compute what the simulation does: without VNNI, oneDNN's
    u8 x s8 kernels (vpmaddubsw) add pairs of products in saturating int16, which 8-bit weight codes
    (|q| up to 127) times u8 activation codes (up to 255) can overflow. 7-bit weights cannot overflow it."""
    if cpu_has_vnni() is not False:
        return []
    wide = [name for name, w in wrappers.items() if "weight" in w.param_quantizers
            and w.param_quantizers["weight"].spec.format.bits == 8]
    if not wide:
        return []
    return [f"this CPU has no VNNI: oneDNN's INT8 kernels add pairs of u8 x s8 products in saturating int16, which "
            f"8-bit weight codes can overflow ({len(wide)} layer(s): {', '.join(wide[:3])}"
            f"{' ...' if len(wide) > 3 else ''}): the deployed logits may differ from the simulation (check them "
            "with check_pt2e); 7-bit weights (int7) cannot overflow"]


def pt2e_model(qmodel: nn.Module, example_input: torch.Tensor, *, compile: bool = True) -> Pt2eDeployment:
    """Deploy a calibrated fake-quant model (quantize_model + calibrate, BatchNorm folded) on PyTorch x86 INT8
    through torchao's pt2e flow and inductor, with quantlens's scales and zero points (never re-calibrated).

    example_input: float32 (B, C, H, W); the deployment accepts any batch size. compile=False leaves the converted
    graph module uncompiled (reference quantize/dequantize in float: for inspection). BackendError (one line) for
    formats PyTorch x86 cannot run; MissingPackageError when torchao is absent."""
    wrappers = {n: m for n, m in qmodel.named_modules() if isinstance(m, QuantWrapper)}
    _validate(list(wrappers.items()))
    api = _torchao()
    params: dict[str, _Params] = {}
    for name, wrapper in wrappers.items():
        for i, q in enumerate(wrapper.input_quantizers):
            params[f"{name} input {i}"] = _activation_params(q, f"{name} input {i}")
        if "weight" in wrapper.param_quantizers:
            params[f"{name} weight"] = _weight_params(wrapper.param_quantizers["weight"], wrapper.module.weight,
                                                      f"{name} weight")
    example_input = example_input.detach().float().cpu()
    start = time.perf_counter()
    with quiet_torchao():
        gm = _export(float_model(qmodel), example_input)
        quantizer = api.x86.X86InductorQuantizer()
        quantizer.set_global(api.x86.get_default_x86_inductor_quantization_config())
        try:
            prepared = api.prepare_pt2e(gm, quantizer)
        except Exception as error:
            raise BackendError(f"pt2e deployment: prepare_pt2e failed: {describe(error)}") from error
        tensors, notes = _override_observers(api, prepared, wrappers, params)
        try:
            converted = api.convert_pt2e(prepared)
        except Exception as error:
            raise BackendError(f"pt2e deployment: convert_pt2e failed: {describe(error)}") from error
    export_s = time.perf_counter() - start
    weights = _verify(converted, wrappers, tensors, params)
    notes.extend(saturation_risk(wrappers))
    deployment = Pt2eDeployment(compiled=converted, graph_module=converted, tensors=tensors, weights=weights,
                                notes=notes, export_s=export_s)
    if compile:
        deployment.compiled = torch.compile(converted, backend="inductor")
        batch = example_input[:2].clone() if example_input.shape[0] >= 2 else example_input.repeat(
            2, *([1] * (example_input.dim() - 1)))
        torch._dynamo.mark_dynamic(batch, 0)  # one compilation for every batch size >= 2 (1 compiles once more)
        before = _kernel_counters()
        start = time.perf_counter()
        try:
            deployment.run(batch)
        except Exception as error:
            raise BackendError(f"pt2e deployment: inductor compilation failed: {describe(error)}") from error
        deployment.compile_s = time.perf_counter() - start
        after = _kernel_counters()
        deployment.int8_kernels = {k: after[k] - before.get(k, 0) for k in after if after[k] > before.get(k, 0)}
        if not deployment.int8_kernels:
            deployment.notes.append("inductor fused no INT8 convolution or linear (no qconv/qlinear lowering)")
    return deployment


def _kernel_counters() -> dict[str, int]:
    """Inductor's INT8 lowering counters ('qconv_unary', 'qconv_binary', 'qlinear_unary' ...), process-wide."""
    from torch._dynamo.utils import counters

    found = {}
    for key, value in counters["inductor"].items():
        if key.startswith(("qconv", "qlinear")) and key.endswith("_lower_count"):
            found[key[: -len("_lower_count")]] = int(value)
    return found


# ----------------------------------------------------------------------------------------------- agreement


@dataclass(frozen=True)
class Pt2eAgreement:
    """How the deployed model's logits compare with the fake-quant simulation on the same images."""

    images: int
    top1_agreement: float
    mean_abs_diff: float
    max_abs_diff: float
    max_abs_logit: float

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def check_pt2e(deployment: Pt2eDeployment, qmodel: nn.Module, batches: Iterable[torch.Tensor]) -> Pt2eAgreement:
    """Top-1 agreement and logit differences between `deployment.run` and `qmodel` (the simulation)."""
    agree = images = 0
    total_diff = max_diff = max_logit = 0.0
    qmodel = qmodel.eval()
    for batch in batches:
        with torch.no_grad():
            simulated = qmodel(batch).float()
        deployed = deployment.run(batch).float()
        diff = (deployed - simulated).abs()
        agree += int((deployed.argmax(1) == simulated.argmax(1)).sum())
        images += batch.shape[0]
        total_diff += float(diff.sum()) / diff.shape[1]
        max_diff = max(max_diff, float(diff.max()))
        max_logit = max(max_logit, float(simulated.abs().max()))
    if images == 0:
        raise BackendError("check_pt2e: no batches given")
    return Pt2eAgreement(images, agree / images, total_diff / images, max_diff, max_logit)
