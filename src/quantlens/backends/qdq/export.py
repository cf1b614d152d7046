"""Write the calibrated fake-quant model as an ONNX QDQ file carrying quantlens's own scales.

    result = export_qdq(qmodel, example_input, "model.qdq.onnx")
    result.quantize_nodes, result.int8_weights, result.not_exported, result.sha256

The runtime never re-calibrates: every QuantizeLinear/DequantizeLinear holds the scale and zero
point quantlens calibrated, every quantized conv/linear weight is stored as its integer codes
(int8 initializer -> DequantizeLinear, per-channel scales on axis 0: no float copy of the weight),
biases of such layers with a per-tensor input as int32 codes at scale x_scale * w_scale[oc] (so
ONNX Runtime fuses DQ -> Conv -> Q into QLinearConv). A tensor several quantizers quantize with
identical params gets one Q/DQ pair; differing params keep separate pairs and are reported.

The file is written whole or not at all (temporary file, checked, then renamed); its layer map
(QuantizeLinear node -> quantizers, layer -> ONNX nodes) is stored in the model's metadata
under `quantlens.qdq`, for `inspect.py`, `faithful.py` and `agreement.py`.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from quantlens.atomic import to_jsonable, write_bytes
from quantlens.backends.base import BackendError
from quantlens.backends.onnx_export import (
    INPUT_NAME,
    OUTPUT_NAME,
    _quiet_exporter,
    metadata_json,
    require_export_packages,
)
from quantlens.backends.qdq import graph as g
from quantlens.backends.qdq import ops
from quantlens.backends.qdq.deploy import QDQ, DeployLayer, deploy_model
from quantlens.errors import describe

METADATA_KEY = "quantlens.qdq"
_OP_PATTERNS = (re.compile(r"op='([\w.:]+)', overload='(\w+)'"), re.compile(r"target=torch\.ops\.([\w.]+)\]"))


@dataclass(frozen=True)
class QdqExport:
    """A written QDQ file and what it holds.

    q_nodes: QuantizeLinear node name -> the quantizers (`where`) it implements (several = shared).
    layers: quantlens layer -> the ONNX nodes it computes with (Conv, Gemm, Add ...).
    not_exported: what the file does not express as integer QDQ (e.g. quantized BN parameters kept
    as float values); notes: anything else worth knowing (quantizers on one tensor that disagree)."""

    path: Path
    size_bytes: int
    sha256: str
    quantize_nodes: int
    dequantize_nodes: int
    int8_weights: int
    int32_biases: int
    shared_pairs: int
    not_exported: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    q_nodes: dict[str, list[str]] = field(default_factory=dict)
    layers: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({k: getattr(self, k) for k in self.__dataclass_fields__})


def unsupported_operator(error: BaseException) -> str | None:
    """The operator an exporter error names ('aten.cummax.default'), if it names one."""
    text = "\n".join(str(e) for e in (error, error.__cause__, error.__context__) if e is not None)
    for pattern in _OP_PATTERNS:
        match = pattern.search(text)
        if match:
            return ".".join(match.groups())
    return None


def _trace(deploy: nn.Module, example_input: torch.Tensor, path: Path) -> None:
    trace_batch = example_input[:2] if example_input.shape[0] >= 2 else example_input.repeat(2, 1, 1, 1)
    with _quiet_exporter():
        try:
            torch.onnx.export(deploy, (trace_batch,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), external_data=False,
                              dynamo=True, verbose=False, custom_translation_table=ops.translation_table())
        except Exception as error:  # the exporter raises many types; each becomes one line
            op = unsupported_operator(error)
            if op is not None:
                raise BackendError(f"QDQ export: torch.onnx.export cannot convert operator {op}") from error
            raise BackendError(f"QDQ export: torch.onnx.export failed: {describe(error)}") from error


def _layer_map(deploy: nn.Module) -> tuple[dict[str, tuple[str, str, int]], dict[str, DeployLayer]]:
    quantizers, layers = {}, {}
    for name, module in deploy.named_modules():
        if isinstance(module, DeployLayer):
            layers[name] = module
            for i, q in enumerate(module.input_qdq):
                quantizers[f"{name}.input_qdq.{i}"] = (q.where, name, i)
            if isinstance(module.output_qdq, QDQ):
                quantizers[f"{name}.output_qdq"] = (module.output_qdq.where, name, -1)
    return quantizers, layers


def _weight_counts(model, layers: dict[str, DeployLayer]) -> tuple[int, int, list[str]]:
    """(int8/uint8 weight initializers, int32 bias initializers, problems: float weights left in the file)."""
    from onnx import TensorProto

    index = g.GraphIndex.of(model.graph)
    int8 = sum(1 for t in model.graph.initializer if t.data_type in (TensorProto.INT8, TensorProto.UINT8)
               and len(t.dims) >= 2)
    int32 = sum(1 for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in index.initializers
                and index.initializers[n.input[0]].data_type == TensorProto.INT32)
    problems = []
    for name, layer in layers.items():
        if hasattr(layer, "weight_codes"):
            shape = list(layer.weight_codes.shape)
            floats = [t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT
                      and list(t.dims) == shape]
            if floats:
                problems.append(f"{name}: float weight initializer(s) {floats} in the file")
    return int8, int32, problems


def export_qdq(qmodel: nn.Module, example_input: torch.Tensor, path: str | Path) -> QdqExport:
    """Export a calibrated fake-quant model (quantlens.nn.quantize_model + calibrate) as ONNX QDQ.

    example_input: float32 (B, C, H, W); the file has a dynamic batch axis. BackendError (one line)
    for formats ONNX Runtime CPU cannot run as integer QDQ, per-block scales, uncalibrated
    quantizers, or an operator the exporter cannot convert (named)."""
    require_export_packages("QDQ export")
    import onnx

    path = Path(path)
    deploy = deploy_model(qmodel)  # validates every quantizer first: nothing is written on refusal
    quantizers, layers = _layer_map(deploy)
    example_input = example_input.detach().float().cpu()
    with tempfile.TemporaryDirectory(prefix="quantlens-qdq-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        _trace(deploy, example_input, raw)
        model = onnx.load(str(raw))
    shared, conflicts = g.merge_shared_qdq(model)
    g.unshare_weight_qparams(model)
    q_nodes = g.assign_quantizers(model, quantizers)
    layer_nodes = {name: [n.name for n in g.layer_compute_nodes(model, name)] for name in layers}
    for node in model.graph.node:  # stack traces and local paths: bulky, and they would change the sha256
        del node.metadata_props[:]
    int8, int32, problems = _weight_counts(model, layers)
    if problems:
        raise BackendError(f"QDQ export: {problems[0]}; export refused")
    unassigned = sorted(set(w for w, _, _ in quantizers.values()) - {w for ws in q_nodes.values() for w in ws})
    notes = list(conflicts)
    if unassigned:
        notes.append(f"quantizers not located in the graph: {', '.join(unassigned)}")
    not_exported = [f"{name}.{p}: {why}" for name, layer in layers.items() for p, why in layer.float_params.items()]
    shared += sum(len(ws) - 1 for ws in q_nodes.values())
    meta = {"q_nodes": q_nodes, "layers": layer_nodes,
            "kinds": {name: layer.kind_name for name, layer in layers.items()}}
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.checker.check_model(model)
    _require_dynamic_batch(model)
    data = model.SerializeToString()
    write_bytes(path, data)
    counts = Counter(n.op_type for n in model.graph.node)
    return QdqExport(path=path, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                     quantize_nodes=counts["QuantizeLinear"], dequantize_nodes=counts["DequantizeLinear"],
                     int8_weights=int8, int32_biases=int32, shared_pairs=shared, not_exported=tuple(not_exported),
                     notes=tuple(notes), q_nodes=q_nodes, layers=layer_nodes)


def _require_dynamic_batch(model) -> None:
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    if not dim.dim_param:
        raise BackendError(f"QDQ export: the input's batch axis is fixed ({dim.dim_value}), not dynamic")


def read_layer_map(path_or_model) -> dict[str, Any]:
    """The `quantlens.qdq` metadata of an exported file: q_nodes, layers, kinds."""
    found = metadata_json(path_or_model, METADATA_KEY)
    if found is None:
        raise BackendError("this ONNX file has no quantlens QDQ layer map (not written by export_qdq)")
    return found
