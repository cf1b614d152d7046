"""What OpenVINO executed: the runtime graph its CPU plugin compiled a QDQ file into (nodes, kernels,
precisions and the ONNX nodes each one absorbed), read back instead of assumed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ExecutedNode:
    """One node of OpenVINO's runtime graph: its op, kernel, precisions and the ONNX nodes it absorbed."""

    name: str
    layer_type: str
    primitive: str
    precision: str
    output_precision: str
    originals: tuple[str, ...]

    def holds(self, onnx_node) -> bool:
        """Whether this node executes `onnx_node` (an ONNX NodeProto or a node name): OpenVINO keeps the
        node's name (or adds '/...' to it), or names it after its output tensor (a Gemm -> 'logits')."""
        names = [onnx_node] if isinstance(onnx_node, str) else [onnx_node.name, *onnx_node.output]
        return any(o == n or o.startswith(f"{n}/") for o in self.originals for n in names if n)


@dataclass(frozen=True)
class OpenVinoRuntime:
    """The runtime graph OpenVINO's CPU plugin compiled a QDQ file into (f32 hint, one input shape)."""

    nodes: tuple[ExecutedNode, ...]

    def executing(self, onnx_node) -> ExecutedNode | None:
        """The compute node that executes `onnx_node` (by its name first, then by its output's name)."""
        compute = [n for n in self.nodes if n.layer_type not in ("Input", "Output", "Reorder", "Const")]
        names = [onnx_node] if isinstance(onnx_node, str) else [onnx_node.name, *onnx_node.output]
        for name in names:
            found = next((n for n in compute if n.holds(name)), None)
            if found is not None:
                return found
        return None

    def to_dict(self) -> dict:
        return {"nodes": [vars(n) for n in self.nodes]}


def openvino_runtime(path: str | Path, shape: tuple[int, ...] | None = None) -> OpenVinoRuntime:
    """Compile the QDQ file on OpenVINO CPU (as `OpenVinoQdqRunner` does) and read its runtime graph."""
    import onnx

    from quantlens.backends.qdq.runners import OpenVinoQdqRunner

    if shape is None:
        dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
        shape = (1, *[d.dim_value or 1 for d in dims[1:]])
    nodes = []
    for op in OpenVinoQdqRunner(path).runtime_model(tuple(shape)).get_ops():
        info = op.get_rt_info()
        get = lambda key, info=info: str(info[key].astype(str)) if key in info else ""  # noqa: E731
        originals = tuple(o.strip() for o in get("originalLayersNames").split(",") if o.strip())
        nodes.append(ExecutedNode(op.get_friendly_name(), get("layerType"), get("primitiveType"),
                                  get("runtimePrecision"), get("outputPrecisions"), originals))
    return OpenVinoRuntime(tuple(nodes))
