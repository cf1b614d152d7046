"""Bring an opset >= 18 graph down to opset 17, where onnx2torch has converters, without changing what it
computes.

onnx's version converter has no downgrade adapter for opset 18's Pad, and onnx2torch has no
converters for opset 18's reductions: a classifier exported by torch.onnx.export today (opset 18,
global average pooling as ReduceMean, padding as Pad) could not be converted. What changed after
opset 17 for the operators of an image classifier is small and is handled here node by node:

* ReduceMean, ReduceMax, ... (18): `axes` moved from an attribute to an input. A constant axes input
  becomes the attribute again; `noop_with_empty_axes` with no axes has no opset-17 form.
* Pad (18, 19): an optional `axes` input, and a `wrap` mode. Without them it is Pad-13.
* Operators whose later versions only add tensor types (int4, float8 ...) or attributes left at
  their defaults compute the same at 17 for float32 classifiers (`SAME_AT_17`).

Anything else stops the lowering with the operators named.
"""

from __future__ import annotations

LOWERED_OPSET = 17
# Later versions add tensor types only, or attributes that keep the opset-17 behaviour when absent or at
# these values (Cast's `saturate` concerns float8 only).
SAME_AT_17 = {"AveragePool", "Cast", "CastLike", "Constant", "ConstantOfShape", "Equal", "Flatten", "Identity",
              "Reshape", "Resize", "Shape", "Size", "Split", "Squeeze", "Transpose", "Unsqueeze"}
_ALLOWED = {  # op -> attribute -> whether a value set in the file keeps the opset-17 meaning
    "AveragePool": {"dilations": lambda v: all(d == 1 for d in v)},
    "Resize": {"antialias": lambda v: v == 0, "axes": lambda v: False,
               "keep_aspect_ratio_policy": lambda v: v == b"stretch",
               "coordinate_transformation_mode": lambda v: v != b"half_pixel_symmetric"},
    "Split": {"num_outputs": lambda v: False},
}
REDUCTIONS = {"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
              "ReduceProd", "ReduceSumSquare"}


def _constant_values(graph) -> dict:
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _attribute(node, name):
    from onnx import helper

    found = next((a for a in node.attribute if a.name == name), None)
    return None if found is None else helper.get_attribute_value(found)


def _lower_reduction(node, constants: dict) -> str | None:
    """Rewrite in place; the reason when it cannot be."""
    from onnx import helper

    axes_input = node.input[1] if len(node.input) > 1 and node.input[1] else None
    noop = _attribute(node, "noop_with_empty_axes") or 0
    if axes_input is None:
        if noop:
            return f"{node.op_type} with noop_with_empty_axes and no axes"
    elif axes_input not in constants:
        return f"{node.op_type} with computed axes"
    kept = [a for a in node.attribute if a.name != "noop_with_empty_axes"]
    del node.attribute[:]
    node.attribute.extend(kept)
    if axes_input is not None:
        node.attribute.append(helper.make_attribute("axes", [int(v) for v in constants[axes_input].reshape(-1)]))
        del node.input[1:]
    return None


def _lower_pad(node) -> str | None:
    if len(node.input) > 3 and node.input[3]:
        return "Pad with an axes input"
    if _attribute(node, "mode") == b"wrap":
        return "Pad in wrap mode"
    del node.input[3:]
    return None


def _keeps_defaults(node) -> bool:
    return all(_attribute(node, name) is None or allowed(_attribute(node, name))
               for name, allowed in _ALLOWED.get(node.op_type, {}).items())


def lower_to_17(proto) -> None:
    """Rewrite `proto` (a ModelProto of the default domain at opset >= 18) in place to opset 17;
    ValueError naming what has no opset-17 form."""
    from onnx import defs

    opset = next(o for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    constants = _constant_values(proto.graph)
    problems: dict[str, None] = {}
    for node in proto.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        since = defs.get_schema(node.op_type, max_inclusive_version=opset.version).since_version
        if since <= LOWERED_OPSET:
            continue
        if node.op_type in REDUCTIONS:
            problem = _lower_reduction(node, constants)
        elif node.op_type == "Pad":
            problem = _lower_pad(node)
        elif node.op_type in SAME_AT_17 and _keeps_defaults(node):
            problem = None
        else:
            problem = f"{node.op_type}-{since}"
        if problem:
            problems[problem] = None
    if problems:
        raise ValueError(f"no opset-17 form for {', '.join(problems)}")
    opset.version = LOWERED_OPSET
