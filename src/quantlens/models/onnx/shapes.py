"""Reshape targets computed from tensor shapes, made constants before conversion.

The TorchScript exporter writes `x.view(x.size(0), -1)` as Shape -> Gather -> Unsqueeze -> Concat ->
Reshape. Its PyTorch form computes the target from a tensor's shape at run time, which torch.export
cannot follow (a data-dependent size), so such a file could be simulated but not deployed. The target
depends only on the input's shape: ONNX Runtime evaluates it at two batch sizes, and a target whose only
difference is the batch size there becomes a constant with -1 in that place (0, "copy the input's
dimension", when another place already holds -1). Targets that vary otherwise are left as they are;
the conversion is verified against ONNX Runtime afterwards either way.
"""

from __future__ import annotations

import numpy as np

BATCHES = (2, 3)  # two batch sizes, neither 1 (a size-1 dimension can hide in a broadcast)


def _computed_targets(proto) -> list:
    constants = {t.name for t in proto.graph.initializer}
    return [node for node in proto.graph.node
            if node.op_type == "Reshape" and len(node.input) > 1 and node.input[1] not in constants]


def _evaluate(proto, names: list[str], input_name: str, shape: tuple[int, ...]) -> list[np.ndarray]:
    """The values `names` take in `proto` for a zero input of `shape` (ONNX Runtime, CPU)."""
    import onnxruntime as ort

    import onnx
    from onnx import helper

    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in names)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(names, {input_name: np.zeros(shape, np.float32)})


def _constant_target(at: list[np.ndarray]) -> np.ndarray | None:
    """The target as a constant, from its values at BATCHES; None when it varies otherwise."""
    first, second = (np.asarray(a, np.int64) for a in at)
    if first.shape != second.shape or first.ndim != 1:
        return None
    varies = np.flatnonzero(first != second)
    if len(varies) == 0:
        return first
    if len(varies) > 1 or (first[varies[0]], second[varies[0]]) != BATCHES:
        return None
    target = first.copy()
    target[varies[0]] = 0 if (np.delete(target, varies[0]) == -1).any() else -1
    return target


def _drop_dead_nodes(graph) -> None:
    """Remove the nodes whose outputs nothing reads (the shape computations a constant replaced)."""
    outputs = {v.name for v in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        kept = [node for node in graph.node if any(name in read for name in node.output)]
        if len(kept) == len(graph.node):
            return
        del graph.node[:]
        graph.node.extend(kept)


def fold_computed_reshapes(proto, input_name: str, sample_shape: tuple[int, ...]) -> int:
    """Make constant (in place) every Reshape target of `proto` that depends on the input's shape only
    through its batch size; `sample_shape` is one sample's shape as the file takes it (no batch axis).
    Returns how many were made constant."""
    from onnx import numpy_helper

    reshapes = _computed_targets(proto)
    if not reshapes:
        return 0
    names = [node.input[1] for node in reshapes]
    try:
        values = [_evaluate(proto, names, input_name, (batch, *sample_shape)) for batch in BATCHES]
    except Exception:  # noqa: BLE001 - e.g. a batch baked elsewhere: nothing folded, the verification decides
        return 0
    folded = 0
    for k, node in enumerate(reshapes):
        target = _constant_target([values[0][k], values[1][k]])
        allowzero = any(a.name == "allowzero" and a.i == 1 for a in node.attribute)
        if target is None or (allowzero and (target == 0).any()):
            continue
        name = f"{node.input[1]}__constant"
        proto.graph.initializer.append(numpy_helper.from_array(target, name))
        node.input[1] = name
        folded += 1
    _drop_dead_nodes(proto.graph)
    return folded
