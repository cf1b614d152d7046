"""ONNX graph reading and edits for QDQ files: producers/consumers, shared Q/DQ pairs, extra outputs.

Layer names come from the exporter's node metadata `pkg.torch.onnx.name_scopes` (the module path
of every node, e.g. ['', 'layer1', 'layer1.0', 'layer1.0.conv1', 'conv2d_1']), not from tensor
or initializer names: the exporter deduplicates equal initializers and merges equal
QuantizeLinear nodes on one tensor, so names alone do not say which quantizer a node is.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
_PLUMBING = ("QuantizeLinear", "DequantizeLinear", "Constant", "Shape", "Cast", "Reshape", "Squeeze", "Unsqueeze",
             "Concat", "Gather")


def name_scopes(node) -> list[str]:
    """The module path of a node, outermost first ([] when the exporter recorded none)."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                return [str(s) for s in ast.literal_eval(prop.value)]
            except (ValueError, SyntaxError):
                return []
    return []


def attribute(node, name: str, default=None):
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


@dataclass
class GraphIndex:
    """Producers, consumers and initializers of one graph (rebuild it after an edit)."""

    producer: dict[str, object]
    consumers: dict[str, list]
    initializers: dict[str, object]
    outputs: set[str]

    @classmethod
    def of(cls, graph) -> GraphIndex:
        producer, consumers = {}, defaultdict(list)
        for node in graph.node:
            for out in node.output:
                producer[out] = node
            for name in node.input:
                if name:
                    consumers[name].append(node)
        return cls(producer, dict(consumers), {t.name: t for t in graph.initializer}, {o.name for o in graph.output})

    def array(self, name: str) -> np.ndarray | None:
        """An initializer (or Constant node output) as numpy, else None."""
        from onnx import numpy_helper

        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(attribute(node, "value"))
        return None


def qparams_key(index: GraphIndex, q) -> tuple:
    """(scale bytes, zero point dtype and bytes, axis) of a QuantizeLinear: equal keys quantize identically."""
    scale = index.array(q.input[1])
    zp = index.array(q.input[2]) if len(q.input) > 2 and q.input[2] else None
    return (None if scale is None else (scale.dtype.str, scale.shape, scale.tobytes()),
            None if zp is None else (zp.dtype.str, zp.shape, zp.tobytes()),
            attribute(q, "axis", 1) if scale is not None and scale.ndim else None)


def merge_shared_qdq(model) -> tuple[int, list[str]]:
    """Make every tensor quantized twice with identical params go through one Q -> DQ pair (ONNX Runtime
    fuses a Q only when it has one consumer); keep pairs with differing params and say so.

    Returns (pairs removed, one line per tensor whose quantizers disagree)."""
    graph = model.graph
    index = GraphIndex.of(graph)
    by_input: dict[str, list] = defaultdict(list)
    for node in graph.node:
        if node.op_type == "QuantizeLinear":
            by_input[node.input[0]].append(node)
    removed, conflicts, drop = 0, [], set()
    for tensor, qs in by_input.items():
        keep: dict[tuple, object] = {}
        for q in qs:
            key = qparams_key(index, q)
            first = keep.setdefault(key, q)
            if first is q:
                continue
            # redirect the duplicate's DQ consumers to the first pair's DQ output
            first_dq = [n for n in index.consumers.get(first.output[0], []) if n.op_type == "DequantizeLinear"]
            dup_dqs = index.consumers.get(q.output[0], [])
            if not first_dq or any(n.op_type != "DequantizeLinear" for n in dup_dqs):
                continue
            target = first_dq[0].output[0]
            for dq in dup_dqs:
                for consumer in index.consumers.get(dq.output[0], []):
                    for i, name in enumerate(consumer.input):
                        if name == dq.output[0]:
                            consumer.input[i] = target
                drop.add(id(dq))
            drop.add(id(q))
            removed += 1
        if len(keep) > 1:
            conflicts.append(f"tensor {tensor!r} is quantized with {len(keep)} different scales/zero points: "
                             f"kept {len(keep)} separate Q/DQ pairs (ONNX Runtime fuses only single-consumer Q nodes)")
    if drop:
        kept = [n for n in graph.node if id(n) not in drop]
        del graph.node[:]
        graph.node.extend(kept)
        remove_unused_initializers(model)
    return removed, conflicts


def remove_unused_initializers(model) -> None:
    used = {name for node in model.graph.node for name in node.input}
    used |= {o.name for o in model.graph.output}
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def layer_compute_nodes(model, layer: str) -> list:
    """The nodes a quantlens layer computes with (Conv, Gemm, Add ...), not its Q/DQ or shape plumbing."""
    return [n for n in model.graph.node if layer in name_scopes(n) and n.op_type not in _PLUMBING]


def assign_quantizers(model, quantizers: dict[str, tuple[str, str, tuple]]) -> dict[str, list[str]]:
    """QuantizeLinear node name -> the quantlens quantizers (`where`) it implements.

    quantizers: module path of a QDQ module -> (where, layer path, input index or -1 for an output).
    A quantizer whose own Q node was merged into another (same tensor, same params) is found through
    its layer's compute node: the Q feeding that node's input."""
    index = GraphIndex.of(model.graph)
    found: dict[str, list[str]] = defaultdict(list)
    q_nodes = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    missing = []
    for path, (where, layer, slot) in quantizers.items():
        own = [q for q in q_nodes if path in name_scopes(q)]
        if own:
            found[own[0].name].append(where)
        else:
            missing.append((where, layer, slot))
    for where, layer, slot in missing:
        for node in layer_compute_nodes(model, layer):
            if slot < 0 or slot >= len(node.input):
                continue
            dq = index.producer.get(node.input[slot])
            q = index.producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
                found[q.name].append(where)
                break
    return dict(found)


def add_outputs(model, names: list[str]) -> None:
    """Expose tensors (e.g. Q outputs) as extra graph outputs (type left to inference by the runtime)."""
    from onnx import helper

    present = {o.name for o in model.graph.output}
    index = GraphIndex.of(model.graph)
    for name in names:
        if name in present:
            continue
        node = index.producer[name]
        zp = index.array(node.input[2]) if node.op_type == "QuantizeLinear" and len(node.input) > 2 else None
        elem = helper.np_dtype_to_tensor_dtype(zp.dtype) if zp is not None else 0
        model.graph.output.append(helper.make_tensor_value_info(name, elem, None))


def unshare_weight_qparams(model) -> int:
    """Give each constant-weight DequantizeLinear its own scale and zero-point initializers.

    The exporter deduplicates equal initializers (all-zero weight zero points become one tensor);
    ONNX Runtime's s8 -> u8 weight conversion (session.x64quantprecision) rewrites a weight's zero
    point in place and fails on a shared one ("Attempt to replace the existing tensor").
    Returns the number of initializers copied."""
    index = GraphIndex.of(model.graph)
    uses: dict[str, int] = defaultdict(int)
    for node in model.graph.node:
        for name in node.input:
            uses[name] += 1
    copied = 0
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in index.initializers:
            continue
        for slot, suffix in ((1, "scale"), (2, "zero_point")):
            if slot >= len(node.input) or uses.get(node.input[slot], 0) <= 1:
                continue
            source = index.initializers.get(node.input[slot])
            if source is None:
                continue
            clone = type(source)()
            clone.CopyFrom(source)
            clone.name = f"{node.input[0]}.{suffix}"
            model.graph.initializer.append(clone)
            uses[node.input[slot]] -= 1
            node.input[slot] = clone.name
            copied += 1
    return copied
