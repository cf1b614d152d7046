"""Write a fake-quant model's dynamic INT8 form as one ONNX file for ONNX Runtime, with quantlens's weights.

    result = export_ort_dynamic(qmodel, example_input, "model.dyn.onnx")   # weight_dtype "int8" | "uint8"
    result.layers          # quantlens layer -> its weight initializer (int8/uint8 codes, no float copy)

Each quantized Linear becomes the custom op of `ort_ops.py` (DynamicQuantizeLinear -> MatMulInteger ->
rescale -> bias in the file); everything else is the float model as the ordinary exporter writes it. The
module traced (`OrtDynamicModel`) is also the deployment-faithful simulation: its eager forward computes
what ONNX Runtime computes for each quantized layer (the float layers between them are torch's own).
The file is written whole or not at all; its layer map is stored in the metadata under
`quantlens.dynamic_int8`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from quantlens.atomic import to_jsonable, write_bytes
from quantlens.backends.base import BackendError
from quantlens.backends.dynamic_int8.layers import DynamicLinear, dynamic_linears
from quantlens.backends.dynamic_int8.ort_ops import ort_dynamic_linear, translation_table
from quantlens.backends.onnx_export import (
    INPUT_NAME,
    OUTPUT_NAME,
    _quiet_exporter,
    metadata_json,
    require_export_packages,
)
from quantlens.errors import describe
from quantlens.nn.wrapper import QuantWrapper

METADATA_KEY = "quantlens.dynamic_int8"
WeightDtype = Literal["int8", "uint8"]
_U8_OFFSET = 128


class OrtDynamicLinear(nn.Module):
    """One Linear as ONNX Runtime's DynamicQuantizeMatMul: stored codes (K, O), zero point, scales, bias."""

    def __init__(self, layer: DynamicLinear, weight_dtype: WeightDtype) -> None:
        super().__init__()
        self.layer_name = layer.name
        codes_t = layer.codes.t().contiguous()  # (K, O): MatMulInteger's B
        if weight_dtype == "uint8":  # the same values as u8 codes + 128 with zero point 128
            stored = (codes_t.to(torch.int16) + _U8_OFFSET).to(torch.uint8)
            zero_point = torch.full((layer.out_features,), _U8_OFFSET, dtype=torch.uint8)
        else:
            stored, zero_point = codes_t, torch.zeros(layer.out_features, dtype=torch.int8)
        self.register_buffer("weight_codes", stored)
        self.register_buffer("weight_zero_point", zero_point)
        self.register_buffer("weight_scale", layer.scale.clone())
        bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
        self.register_buffer("bias", bias.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ort_dynamic_linear(x, self.weight_codes, self.weight_zero_point, self.weight_scale, self.bias)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def ort_dynamic_model(qmodel: nn.Module, weight_dtype: WeightDtype = "int8") -> nn.Module:
    """A copy of the fake-quant model with every quantized Linear as `OrtDynamicLinear` (eval, CPU): what
    the export traces, and what ONNX Runtime computes (deployment-faithful)."""
    if weight_dtype not in ("int8", "uint8"):
        raise BackendError(f"weight_dtype must be 'int8' or 'uint8', got {weight_dtype!r}")
    layers = {layer.name: layer for layer in dynamic_linears(qmodel, "onnxruntime")}
    target = copy.deepcopy(qmodel).eval().cpu()
    for name, module in list(target.named_modules()):
        if isinstance(module, QuantWrapper):
            _set_submodule(target, name, OrtDynamicLinear(layers[name], weight_dtype))
    return target


@dataclass(frozen=True)
class OrtDynamicExport:
    """A written file: its size and hash, the weight container, and layer -> weight initializer name."""

    path: Path
    size_bytes: int
    sha256: str
    weight_dtype: str
    layers: dict[str, str] = field(default_factory=dict)
    op_counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({k: getattr(self, k) for k in self.__dataclass_fields__})


def _trace(deploy: nn.Module, example_input: torch.Tensor, path: Path) -> None:
    batch = example_input[:2] if example_input.shape[0] >= 2 else torch.cat([example_input] * 2)
    with _quiet_exporter():
        try:
            torch.onnx.export(deploy, (batch,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), external_data=False,
                              dynamo=True, verbose=False, custom_translation_table=translation_table())
        except Exception as error:  # the exporter raises many types; each becomes one line
            raise BackendError(f"dynamic INT8 export: torch.onnx.export failed: {describe(error)}") from error


def _weight_initializers(model, names: list[str]) -> dict[str, str]:
    """layer -> the initializer holding its codes (the B input of its MatMulInteger node)."""
    consumers = {}
    for node in model.graph.node:
        if node.op_type == "MatMulInteger":
            consumers[node.input[1]] = node
    found = {}
    for name in names:
        wanted = f"{name}.weight_codes"  # the exporter names initializers after the buffer's qualified name
        hits = [wanted] if wanted in consumers else [init for init in consumers if init.endswith(f".{wanted}")]
        if len(hits) != 1:
            raise BackendError(f"dynamic INT8 export: cannot locate {name}'s weight codes in the ONNX graph "
                               f"({len(hits)} candidates)")
        found[name] = hits[0]
    return found


def _unshare(model, layers: dict[str, str]) -> int:
    """Give every layer its own zero point, scale and bias initializers; returns how many were copied.

    The exporter merges identical initializers (the zero points of layers of one width, zero biases), and
    ONNX Runtime 1.32's DynamicQuantizeMatMul fusion then fails on the shared one ("Attempt to replace the
    existing tensor"). The chain per layer: MatMulInteger(x_q, W, x_zp, w_zp) -> Cast -> Mul(., Mul(x_s, w_s))
    -> Add(., bias)."""
    inits = {t.name: t for t in model.graph.initializer}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producer = {out: node for node in model.graph.node for out in node.output}
    copied = 0

    def own(node, index: int, wanted: str) -> None:
        nonlocal copied
        current = node.input[index]
        if current == wanted or current not in inits or len(consumers.get(current, [])) < 2:
            return
        if wanted not in inits:
            clone = model.graph.initializer.add()
            clone.CopyFrom(inits[current])
            clone.name = wanted
            inits[wanted] = clone
            copied += 1
        node.input[index] = wanted

    for layer, weight in layers.items():
        (matmul,) = [n for n in consumers[weight] if n.op_type == "MatMulInteger"]
        own(matmul, 3, f"{layer}.weight_zero_point")
        (cast,) = consumers[matmul.output[0]]
        (rescale,) = consumers[cast.output[0]]
        multiplier = producer[rescale.input[1] if rescale.input[0] == cast.output[0] else rescale.input[0]]
        own(multiplier, 1, f"{layer}.weight_scale")
        (add,) = consumers[rescale.output[0]]
        own(add, 1 if add.input[0] == rescale.output[0] else 0, f"{layer}.bias")
    return copied


def export_ort_dynamic(qmodel: nn.Module, example_input: torch.Tensor, path: str | Path, *,
                       weight_dtype: WeightDtype = "int8") -> OrtDynamicExport:
    """Export a fake-quant model simulating the 'onnxruntime' target as an ONNX file (dynamic batch axis).

    example_input: float32 (B, ...) the model takes. BackendError (one line) for layers or formats the
    target cannot run (layers.py), or an operator the exporter cannot convert."""
    require_export_packages("dynamic INT8 export")
    import onnx

    path = Path(path)
    deploy = ort_dynamic_model(qmodel, weight_dtype)  # checks every layer first: nothing is written on refusal
    names = [n for n, m in deploy.named_modules() if isinstance(m, OrtDynamicLinear)]
    with tempfile.TemporaryDirectory(prefix="quantlens-dyn-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        _trace(deploy, example_input.detach().float().cpu(), raw)
        model = onnx.load(str(raw))
    layers = _weight_initializers(model, names)
    _unshare(model, layers)
    for node in model.graph.node:  # stack traces and local paths: bulky, and they would change the sha256
        del node.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps({"layers": layers, "weight_dtype": weight_dtype})
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    write_bytes(path, data)
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return OrtDynamicExport(path=path, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                            weight_dtype=weight_dtype, layers=layers, op_counts=dict(sorted(counts.items())))


def read_layer_map(path_or_model) -> dict[str, Any]:
    """The `quantlens.dynamic_int8` metadata of an exported file: layers (layer -> initializer), weight_dtype."""
    found = metadata_json(path_or_model, METADATA_KEY)
    if found is None:
        raise BackendError("this ONNX file has no quantlens dynamic INT8 layer map (not written by export_ort_dynamic)")
    return found
