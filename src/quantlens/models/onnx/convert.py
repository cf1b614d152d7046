"""An ONNX file's PyTorch form (onnx2torch), for simulation and post-training quantization.

onnx2torch builds a torch.fx GraphModule with one module per ONNX node (Conv -> nn.Conv2d, Gemm ->
nn.Linear, Softmax -> nn.Softmax ...), so quantlens's layer wrappers find the layers by type. Files
written by other tools need these preparations first, all lossless:

* a file whose opset onnx2torch does not cover is brought to opset 17 or 13 (onnx's version
  converter; from opset 18 down, `opset.lower_to_17` first): onnx2torch has no converters for
  several old operator versions (Gemm-7, Constant-1) nor for opset 18's ReduceMean and Pad (what
  torch.onnx.export writes today), and from opset 13 Softmax maps to nn.Softmax;
* weights held in `Constant` nodes (older exporters, hand-built graphs) become initializers, which is
  where onnx2torch looks for convolution and linear weights; Reshape's allowzero=1 (torch.onnx.export
  sets it) is dropped where the shape is a constant without zeros, the only case it changes nothing;
* a file exported at a fixed batch size B usually bakes B into its flattening Reshape too (a constant
  shape [B, 64]); there the batch dimension becomes free ([-1, 64], or [0, ...] when another dimension
  is already -1), so the PyTorch form takes any batch. Whether that was right is what `verify` checks:
  ONNX Runtime runs the file itself in batches of B, the PyTorch form the whole probe at once;
* a Reshape target computed from a tensor's shape (the TorchScript exporter's `x.view(x.size(0), -1)`)
  becomes a constant when only the batch size moves it (`shapes`): torch.export cannot follow it.

Operators onnx2torch cannot convert are found before converting and named in one line. The form is
then made quantlens's (`modules.simplify`: quantlens's Add/Mul/MatMul modules, constant Reshape and
Slice that torch.export can follow), and an NHWC file's input is transposed, in the graph, from the
NCHW batch every quantlens model receives. `verify` runs it beside ONNX Runtime on real samples.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import fx

from quantlens.errors import ModelError, describe
from quantlens.models.onnx.file import OnnxFile
from quantlens.models.onnx.modules import simplify
from quantlens.models.onnx.opset import LOWERED_OPSET, lower_to_17
from quantlens.models.onnx.shapes import fold_computed_reshapes

MIN_OPSET = 13
CONVERSION_OPSETS = (17, 13)
# Agreement the PyTorch form must reach with ONNX Runtime on the same batch: atol + rtol * max|output|.
# float32 sums taken in another order differ by ~1e-6 relative; a wrong conversion by far more.
ATOL = 1e-4
RTOL = 1e-4
INSTALL = "pip install --no-deps onnx2torch"  # its torchvision requirement would replace a CPU torch build


def _unavailable(name: str):
    if name.startswith("__"):  # __file__, __path__ ...: what inspect and importlib probe must stay absent
        raise AttributeError(name)

    def call(*args, **kwargs):
        raise ModelError(f"converting this graph needs torchvision.ops.{name}, and torchvision does not import here")

    return call


@contextlib.contextmanager
def _torchvision_for_import() -> Iterator[None]:
    """onnx2torch imports torchvision at import time, for its NonMaxSuppression and RoiAlign converters
    only. Where torchvision does not import (its PyPI wheels are CUDA builds that fail next to a CPU
    torch), a stand-in whose functions raise is placed in sys.modules for the import and removed after
    it, so classifiers convert and only those two operators would fail, with that reason."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - any failure (absent, or a build that does not match torch) is "not here"
        pass
    else:
        yield
        return
    names = ("torchvision", "torchvision.ops")
    saved = {name: sys.modules.get(name) for name in names}
    stand_in = types.ModuleType("torchvision")
    stand_in.ops = types.ModuleType("torchvision.ops")
    stand_in.ops.__getattr__ = _unavailable
    sys.modules.update({"torchvision": stand_in, "torchvision.ops": stand_in.ops})
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _onnx2torch():
    try:
        with _torchvision_for_import():
            import onnx2torch
            from onnx2torch.node_converters.registry import get_converter
    except ImportError:
        raise ModelError(f"simulating an ONNX model converts it to PyTorch with onnx2torch, which is not installed; "
                         f"install it with: {INSTALL} (or pip install 'quantlens[onnx2torch]')") from None
    return onnx2torch, get_converter


def _constants_as_initializers(proto) -> None:
    """Move every Constant node holding a tensor into the graph's initializers (in place)."""
    from onnx import numpy_helper

    graph = proto.graph
    kept = []
    for node in graph.node:
        value = next((a for a in node.attribute if a.name == "value"), None)
        if node.op_type == "Constant" and value is not None and len(node.attribute) == 1:
            graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(value.t), node.output[0]))
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)


def _drop_inert_allowzero(proto) -> None:
    """Remove Reshape's allowzero=1 where the target shape is a constant without zeros: it then means
    nothing (it only changes how a 0 in the shape is read), and onnx2torch refuses the attribute."""
    from onnx import numpy_helper

    shapes = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    for node in proto.graph.node:
        allow = next((a for a in node.attribute if a.name == "allowzero"), None)
        if node.op_type == "Reshape" and allow is not None and allow.i == 1:
            shape = shapes.get(node.input[1])
            if shape is not None and (shape != 0).all():
                node.attribute.remove(allow)


def _free_batch(proto, batch: int) -> None:
    """Make the batch axis of a graph fixed at `batch` free (in place): the input's and outputs' first
    dimension becomes symbolic, and every constant Reshape target of rank >= 2 starting with `batch` starts
    with -1 instead (0, "copy the input's first dimension", when it already holds a -1 and allowzero is off)."""
    from onnx import numpy_helper

    graph = proto.graph
    for value in (graph.input[0], *graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims):
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    initializers = {t.name: t for t in graph.initializer}
    for node in graph.node:
        tensor = initializers.get(node.input[1]) if node.op_type == "Reshape" and len(node.input) > 1 else None
        if tensor is None:
            continue
        shape = numpy_helper.to_array(tensor).copy()
        if shape.ndim != 1 or len(shape) < 2 or shape[0] != batch:
            continue
        allowzero = any(a.name == "allowzero" and a.i == 1 for a in node.attribute)
        if (shape[1:] == -1).any() and allowzero:
            continue  # neither -1 nor 0 can stand for the batch: left as it is, `verify` will say so
        shape[0] = 0 if (shape[1:] == -1).any() else -1
        tensor.CopyFrom(numpy_helper.from_array(shape, tensor.name))


def _at_opset(file: OnnxFile, opset: int, sample_shape: tuple[int, ...] | None = None):
    """A copy of the file's ModelProto at `opset`: lowered to 17 node by node from opset 18 and later
    (`opset.lower_to_17`), then onnx's version converter for the rest of the way."""
    import onnx
    from onnx import version_converter

    proto = onnx.ModelProto()
    proto.CopyFrom(file.proto)
    current = file.opset
    if opset < current and current > LOWERED_OPSET:
        lower_to_17(proto)
        current = LOWERED_OPSET
    if opset != current:
        proto = version_converter.convert_version(proto, opset)
    _constants_as_initializers(proto)
    if file.input.batch is not None:
        _free_batch(proto, file.input.batch)
    if sample_shape is not None:
        fold_computed_reshapes(proto, file.input.name, sample_shape)
    _drop_inert_allowzero(proto)
    return proto


def candidate_opsets(opset: int) -> list[int]:
    """Opsets to try, in order: the file's own (when onnx2torch's converters reach it), then 17 and 13,
    where onnx2torch has the most converters (it has few for opset-18 reductions and Pad, and none for
    several pre-13 versions)."""
    return [o for o in dict.fromkeys([opset if opset >= MIN_OPSET else None, *CONVERSION_OPSETS]) if o is not None]


def prepared_for_conversion(file: OnnxFile, get_converter,
                            sample_shape: tuple[int, ...] | None = None) -> tuple[object, int]:
    """(ModelProto, opset): the first of `candidate_opsets` at which onnx2torch has a converter for every
    operator, with every Constant tensor as an initializer; ModelError naming the operators otherwise."""
    first_missing: list[str] | None = None
    failures = []
    for opset in candidate_opsets(file.opset):
        try:
            proto = _at_opset(file, opset, sample_shape)
        except Exception as exc:  # the version converter lacks an adapter for one of the nodes
            failures.append(f"opset {opset}: {describe(exc)}")
            continue
        missing = unsupported_operators(proto, get_converter)
        if not missing:
            return proto, opset
        first_missing = first_missing or missing
    if first_missing is None:
        raise ModelError(f"{file.path}: cannot bring opset {file.opset} to one onnx2torch converts "
                         f"({'; '.join(failures)})")
    tried = ", ".join(str(o) for o in candidate_opsets(file.opset))
    raise ModelError(f"{file.path}: onnx2torch cannot convert operator {', '.join(first_missing)} (tried opsets "
                     f"{tried}), so it has no PyTorch form to simulate; quantlens eval runs the file as it is on "
                     f"ONNX Runtime")


def unsupported_operators(proto, get_converter) -> list[str]:
    """'Op (opset N)' for every operator type onnx2torch has no converter for, in graph order."""
    opsets = {o.domain or "": o.version for o in proto.opset_import}
    missing: dict[str, None] = {}
    for node in proto.graph.node:
        domain = "" if node.domain in ("", "ai.onnx") else node.domain
        try:
            get_converter(operation_type=node.op_type, version=opsets.get(domain, 1), domain=domain)
        except NotImplementedError:
            name = node.op_type if not domain else f"{domain}.{node.op_type}"
            missing[f"{name} (opset {opsets.get(domain, '?')})"] = None
    return list(missing)


def _transpose_input(module: fx.GraphModule) -> None:
    """Insert (B, C, H, W) -> (B, H, W, C) after the graph's input: the module takes NCHW."""
    graph = module.graph
    placeholder = next(node for node in graph.nodes if node.op == "placeholder")
    with graph.inserting_after(placeholder):
        permuted = graph.call_method("permute", (placeholder, 0, 2, 3, 1))
    placeholder.replace_all_uses_with(permuted)
    permuted.args = (placeholder, 0, 2, 3, 1)  # replace_all_uses_with rewired its own argument too
    graph.lint()
    module.recompile()


def to_torch(file: OnnxFile, layout: str, sample_shape: tuple[int, int, int] | None = None) -> tuple[fx.GraphModule,
                                                                                                    int]:
    """(the file's PyTorch form, the opset it was converted at): the form takes float32 (B, C, H, W)
    whatever the file's `layout`; ModelError naming the operators onnx2torch cannot convert, or
    onnx2torch's own reason. `sample_shape` (C, H, W), the input the run feeds, lets Reshape targets
    computed from shapes become constants (`shapes.fold_computed_reshapes`)."""
    onnx2torch, get_converter = _onnx2torch()
    if sample_shape is not None and layout == "nhwc":
        sample_shape = (sample_shape[1], sample_shape[2], sample_shape[0])  # as the file takes it
    proto, opset = prepared_for_conversion(file, get_converter, sample_shape)
    try:
        with _torchvision_for_import():
            module = onnx2torch.convert(proto)
    except ModelError:
        raise
    except Exception as exc:  # a converter refused an attribute or an input it does not handle
        raise ModelError(f"{file.path}: onnx2torch cannot convert it ({describe(exc)})") from None
    with _torchvision_for_import():
        simplify(module)
    if layout == "nhwc":
        _transpose_input(module)
    return module.eval(), opset


@dataclass(frozen=True)
class Conversion:
    """How closely the PyTorch form matched ONNX Runtime on `samples` real samples (raw outputs)."""

    max_abs_diff: float
    tolerance: float
    samples: int
    top1_agreement: float
    opset: int | None = None  # the opset the graph was converted at

    def to_dict(self) -> dict:
        return {"converter": "onnx2torch", "opset": self.opset, "max_abs_diff": self.max_abs_diff,
                "tolerance": self.tolerance, "samples": self.samples, "top1_agreement": self.top1_agreement}

    def describe(self) -> str:
        return (f"max |output difference| vs ONNX Runtime {self.max_abs_diff:.2g} on {self.samples} samples "
                f"(tolerance {self.tolerance:.2g}), top-1 agreement {self.top1_agreement:.3f}")


@torch.inference_mode()
def verify(torch_form: torch.nn.Module, reference: torch.Tensor, batch: torch.Tensor, path: str) -> Conversion:
    """Run `torch_form` on `batch` (B, C, H, W) and compare with `reference`, ONNX Runtime's raw outputs on
    the same batch; ModelError with the figures when they differ by more than ATOL + RTOL * max|reference|."""
    try:
        ours = torch_form(batch).float()
    except Exception as exc:  # e.g. a batch size baked into a constant the graph broadcasts against
        raise ModelError(f"{path}: its PyTorch form (onnx2torch) fails on a batch of {len(batch)} "
                         f"({describe(exc)}); is a batch size baked into the graph?") from None
    if ours.shape != reference.shape:
        raise ModelError(f"{path}: its PyTorch form returns shape {tuple(ours.shape)}, ONNX Runtime "
                         f"{tuple(reference.shape)}")
    diff = float((ours - reference).abs().max()) if ours.numel() else 0.0
    tolerance = ATOL + RTOL * float(reference.abs().max()) if reference.numel() else ATOL
    agreement = float((ours.argmax(1) == reference.argmax(1)).float().mean()) if len(batch) else 1.0
    result = Conversion(diff, tolerance, len(batch), agreement)
    if not diff <= tolerance:  # also refuses NaN
        raise ModelError(f"{path}: its PyTorch form (onnx2torch) differs from ONNX Runtime: {result.describe()}")
    return result
