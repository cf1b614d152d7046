"""An ONNX file rewritten to quantlens's runtime interface, for backends that run files as they are.

quantlens's ONNX backends feed an input named `input`, float32 (B, C, H, W), and read an output named
`logits` whose softmax is the probabilities. `write_runtime_file` keeps the file's graph as it is and
only adds what that interface needs around it: an NCHW -> NHWC Transpose (or an Identity) before its
input, and the log of its output when it returns probabilities (an Identity otherwise). A fixed batch
size stays fixed.

`onnx_source_of(module)` tells a backend which ONNX file an experiment's module was converted from;
it answers for that very object only, never for a copy (a quantized copy is not the file).

`with_source_interface` goes the other way, for a file quantlens wrote from such a module (a quantized
model to deploy): it takes the source file's input (name, layout) and returns what the source returned
(probabilities again, through an Exp of the log), so it can replace the source file where it runs.
"""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
from torch import nn

from quantlens.atomic import atomic_path
from quantlens.models.onnx.file import OnnxFile

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
_TINY = float(np.finfo(np.float32).tiny)
_SOURCES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _rename_value(graph, old: str, new: str) -> None:
    """Rename the value `old` to `new` everywhere in `graph` (not in subgraphs)."""
    for node in graph.node:
        node.input[:] = [new if v == old else v for v in node.input]
        node.output[:] = [new if v == old else v for v in node.output]
    for collection in (graph.input, graph.output, graph.value_info, graph.initializer):
        for item in collection:
            if item.name == old:
                item.name = new


def _names(graph) -> set[str]:
    names = {v.name for v in (*graph.input, *graph.output, *graph.value_info, *graph.initializer)}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
    return names


def _free(graph, name: str, keep: str) -> None:
    """Make `name` unused in `graph` (renaming what uses it), unless it is `keep`."""
    if name != keep and name in _names(graph):
        _rename_value(graph, name, f"{name}__original")


def runtime_proto(file: OnnxFile, layout: str, kind: str):
    """A copy of the file's ModelProto with quantlens's interface (see the module docstring)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    proto = onnx.ModelProto()
    proto.CopyFrom(file.proto)
    graph = proto.graph
    original_in, original_out = file.input.name, file.output_name
    _free(graph, INPUT_NAME, original_in if layout == "nchw" else "")
    _free(graph, OUTPUT_NAME, original_out if kind != "probabilities" else "")
    original_in = f"{INPUT_NAME}__original" if original_in == INPUT_NAME and layout != "nchw" else original_in
    original_out = f"{OUTPUT_NAME}__original" if original_out == OUTPUT_NAME and kind == "probabilities" \
        else original_out
    batch = file.input.batch if file.input.batch is not None else "batch"
    channels, height, width = file.input.dims(layout)
    dims = [batch, channels or "channels", height or "height", width or "width"]
    added_in, added_out = [], []
    if layout == "nhwc":
        added_in.append(helper.make_node("Transpose", [INPUT_NAME], [original_in], perm=[0, 2, 3, 1]))
    elif original_in != INPUT_NAME:
        added_in.append(helper.make_node("Identity", [INPUT_NAME], [original_in]))
    if kind == "probabilities":  # log(max(p, tiny)): no -inf for probabilities that underflowed to 0
        graph.initializer.append(numpy_helper.from_array(np.array([_TINY], np.float32), "quantlens_tiny"))
        added_out += [helper.make_node("Max", [original_out, "quantlens_tiny"], ["quantlens_clamped"]),
                      helper.make_node("Log", ["quantlens_clamped"], [OUTPUT_NAME])]
    elif original_out != OUTPUT_NAME:
        added_out.append(helper.make_node("Identity", [original_out], [OUTPUT_NAME]))
    nodes = [*added_in, *graph.node, *added_out]
    del graph.node[:]
    graph.node.extend(nodes)
    inputs = [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, dims)]
    inputs += [v for v in graph.input if v.name not in (original_in, INPUT_NAME)]  # initializers listed as inputs
    del graph.input[:]
    graph.input.extend(inputs)
    classes = file.num_classes or "classes"
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [batch, classes]))
    onnx.checker.check_model(proto)
    return proto


def write_runtime_file(file: OnnxFile, layout: str, kind: str, path: str | Path) -> Path:
    """Write `runtime_proto` to `path` (atomically) and return it."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        onnx.save(runtime_proto(file, layout, kind), str(tmp))
    return path


def register_source(module: nn.Module, source) -> None:
    """Record that `module` (this object, not its copies) is the PyTorch form of `source` (an OnnxModel)."""
    _SOURCES[module] = source


def onnx_source_of(module: nn.Module):
    """The OnnxModel `module` itself was converted from, else None (for any copy, too)."""
    try:
        return _SOURCES.get(module)
    except TypeError:  # not weakly referenceable
        return None


def with_source_interface(proto, file: OnnxFile, layout: str, kind: str):
    """A copy of `proto` (quantlens's interface: `input` NCHW in, `logits` out, the log of probabilities
    for a source that returns them) that takes `file`'s input as `file` does (its name, its layout) and
    returns `file`'s output (its name, its kind)."""
    import onnx
    from onnx import TensorProto, helper

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    graph = out.graph
    source_in, source_out = file.input.name, file.output_name
    (batch, *_), = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.input
                    if v.name == INPUT_NAME]
    inner_in, inner_out = INPUT_NAME, OUTPUT_NAME  # the values the graph itself reads and writes
    if source_in == INPUT_NAME and layout == "nhwc":  # the same name, another layout: the graph's moves aside
        inner_in = f"{INPUT_NAME}__nchw"
        _rename_value(graph, INPUT_NAME, inner_in)
    if source_out == OUTPUT_NAME and kind == "probabilities":
        inner_out = f"{OUTPUT_NAME}__log"
        _rename_value(graph, OUTPUT_NAME, inner_out)
    for name in {source_in, source_out} - {INPUT_NAME, OUTPUT_NAME}:
        _free(graph, name, "")
    channels, height, width = file.input.dims(layout)
    dims = [channels or "channels", height or "height", width or "width"]
    dims = [batch, dims[1], dims[2], dims[0]] if layout == "nhwc" else [batch, *dims]
    head, tail = [], []
    if layout == "nhwc":
        head.append(helper.make_node("Transpose", [source_in], [inner_in], perm=[0, 3, 1, 2],
                                     name="quantlens_source_layout"))
    elif source_in != INPUT_NAME:
        head.append(helper.make_node("Identity", [source_in], [inner_in], name="quantlens_source_input"))
    if kind == "probabilities":  # the log quantlens took, undone
        tail.append(helper.make_node("Exp", [inner_out], [source_out], name="quantlens_source_probabilities"))
    elif source_out != OUTPUT_NAME:
        tail.append(helper.make_node("Identity", [inner_out], [source_out], name="quantlens_source_output"))
    nodes = [*head, *graph.node, *tail]
    del graph.node[:]
    graph.node.extend(nodes)
    if head:
        inputs = [helper.make_tensor_value_info(source_in, TensorProto.FLOAT, dims)]
        inputs += [v for v in graph.input if v.name not in (INPUT_NAME, inner_in)]
        del graph.input[:]
        graph.input.extend(inputs)
    if tail:
        (classes,) = [v.type.tensor_type.shape.dim[1] for v in graph.output if v.name in (OUTPUT_NAME, inner_out)]
        del graph.output[:]
        graph.output.append(helper.make_tensor_value_info(source_out, TensorProto.FLOAT,
                                                          [batch, classes.dim_param or classes.dim_value]))
    onnx.checker.check_model(out)
    return out
