"""What the runtimes made of a QDQ file: which quantlens layers became integer kernels.

ONNX Runtime: the optimised graph (SessionOptions.optimized_model_filepath) at the default level;
a layer is integer when its node became QLinearConv / QLinearMatMul / QGemm / QLinearAdd /
MatMulInteger / ConvInteger ..., float when a Conv/Gemm/Add survived between DQ and Q. Layers are
found by their weight initializer (conv/linear) or by node name (ORT keeps the exported node's
name, or adds `_token_<n>` to it when it fuses).

OpenVINO: the compiled model's runtime graph; each executed op's rt_info `layerType`,
`runtimePrecision` and `originalLayersNames` (the ONNX node names it absorbed).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantlens.atomic import to_jsonable
from quantlens.backends.qdq import graph as g
from quantlens.backends.qdq.export import read_layer_map
from quantlens.backends.qdq.runners import ort_session

INTEGER_OPS = ("QLinearConv", "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearMul", "MatMulInteger",
               "ConvInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QLinearAveragePool",
               "QLinearGlobalAveragePool", "QLinearConcat", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax")


@dataclass(frozen=True)
class LayerFusion:
    """One quantlens layer in a runtime: the op it ran as and whether that op is an integer kernel."""

    layer: str
    kind: str
    runtime_op: str  # e.g. "QLinearConv", "Conv" (float), "" when not found
    integer: bool
    node: str = ""


@dataclass(frozen=True)
class FusionReport:
    runtime: str
    layers: tuple[LayerFusion, ...]
    op_counts: dict[str, int] = field(default_factory=dict)

    def layer(self, name: str) -> LayerFusion | None:
        return next((f for f in self.layers if f.layer == name), None)

    @property
    def integer_layers(self) -> list[str]:
        return [f.layer for f in self.layers if f.integer]

    @property
    def float_layers(self) -> list[str]:
        return [f.layer for f in self.layers if not f.integer]

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({"runtime": self.runtime, "op_counts": self.op_counts,
                            "integer_layers": self.integer_layers, "float_layers": self.float_layers,
                            "layers": [vars(f) for f in self.layers]})


def weight_initializers(model, layers: dict[str, list[str]]) -> dict[str, str]:
    """layer -> the integer weight initializer its compute node reads through DequantizeLinear."""
    index = g.GraphIndex.of(model.graph)
    by_name = {n.name: n for n in model.graph.node}
    found = {}
    for layer, names in layers.items():
        for name in names:
            node = by_name.get(name)
            if node is None or len(node.input) < 2:
                continue
            dq = index.producer.get(node.input[1])
            if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in index.initializers:
                found[layer] = dq.input[0]
    return found


def _match(node_name: str, names: list[str]) -> bool:
    return any(node_name == n or node_name.startswith(f"{n}_token_") for n in names)


def ort_fusion(path: str | Path, *, precise: bool | None = False) -> FusionReport:
    """ONNX Runtime's optimised graph of a QDQ file, mapped back to quantlens layers."""
    import onnx

    original = onnx.load(str(path))
    meta = read_layer_map(original)
    weights = weight_initializers(original, meta["layers"])
    with tempfile.TemporaryDirectory(prefix="quantlens-ort-opt-") as tmp:
        optimized_path = Path(tmp) / "optimized.onnx"
        ort_session(path, precise=precise, optimized_model_path=optimized_path)
        optimized = onnx.load(str(optimized_path))
    fused = []
    for layer, names in meta["layers"].items():
        hit = None
        for node in optimized.graph.node:
            if node.op_type in g.QDQ_OPS or node.op_type == "Transpose":
                continue
            if (layer in weights and weights[layer] in node.input) or _match(node.name, names):
                hit = node
                break
        op = hit.op_type if hit is not None else ""
        fused.append(LayerFusion(layer, meta["kinds"].get(layer, ""), op, op in INTEGER_OPS,
                                 hit.name if hit is not None else ""))
    counts = Counter(n.op_type for n in optimized.graph.node)
    return FusionReport("onnxruntime", tuple(fused), dict(sorted(counts.items())))


def openvino_fusion(path: str | Path) -> FusionReport:
    """OpenVINO CPU (f32 hint): per quantlens layer, the executed op's layerType and runtimePrecision."""
    import onnx

    from quantlens.backends.qdq.runners import OpenVinoQdqRunner

    model = onnx.load(str(path))
    meta = read_layer_map(model)
    outputs = {n.name: list(n.output) for n in model.graph.node}
    dims = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    runtime = OpenVinoQdqRunner(path).runtime_model((1, *dims[1:]))
    ops = []
    for op in runtime.get_ops():
        info = op.get_rt_info()
        get = lambda key, info=info: str(info[key].astype(str)) if key in info else ""  # noqa: E731
        ops.append((get("layerType"), get("runtimePrecision"), get("originalLayersNames").split(",")))
    fused, counts = [], Counter()
    for layer_type, precision, _ in ops:
        counts[f"{layer_type}:{precision}"] += 1
    for layer, names in meta["layers"].items():
        known = set(names) | {o for n in names for o in outputs.get(n, [])}  # OpenVINO may keep output names
        hit = next(((t, p) for t, p, originals in ops if any(o.strip() in known for o in originals)
                    and t not in ("Reorder",)), None)
        op = f"{hit[0]}:{hit[1]}" if hit else ""
        if hit and meta["kinds"].get(layer) not in ("Conv1d", "Conv2d", "Linear"):
            op += " (fused)"  # e.g. a residual Add executed as the convolution's post-op
        integer = bool(hit) and hit[1].upper() in ("I8", "U8")
        fused.append(LayerFusion(layer, meta["kinds"].get(layer, ""), op, integer))
    return FusionReport("openvino", tuple(fused), dict(sorted(counts.items())))


fused_layers = ort_fusion  # the name the design notes use
