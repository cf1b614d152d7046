"""Run a dynamic INT8 ONNX file on ONNX Runtime's CPU provider, and read what it fused.

`precise`: ONNX Runtime's u8 x s8 GEMM on x86 CPUs without VNNI adds pairs of products in saturating
int16 lanes (measured here, AVX2 EPYC, one 192 -> 576 layer: 2.8 % of outputs off); the session option
`session.x64quantprecision` selects exact kernels. `precise=None` turns it on exactly when the weights
are int8 and the CPU lacks VNNI/AMX-INT8; uint8 weights (codes + 128) run the exact u8 x u8 kernel anyway.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quantlens.atomic import to_jsonable
from quantlens.backends.base import cpu_has_int8_dot_product
from quantlens.backends.dynamic_int8.ort_export import read_layer_map
from quantlens.backends.onnx_export import INPUT_NAME, OUTPUT_NAME
from quantlens.backends.qdq.runners import ort_session

# what ONNX Runtime runs a quantized Linear as: integer kernels, or the unfused chain (still integer)
INTEGER_OPS = ("DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulInteger")


def _numpy(batch) -> np.ndarray:
    if isinstance(batch, torch.Tensor):
        return batch.detach().cpu().float().contiguous().numpy()
    return np.ascontiguousarray(batch, dtype=np.float32)


def needs_precise(weight_dtype: str) -> bool:
    """Whether exact kernels must be asked for: int8 weights on a CPU without VNNI/AMX-INT8."""
    return weight_dtype == "int8" and not cpu_has_int8_dot_product()


class OrtDynamicRunner:
    """`run(batch)` -> float32 logits (B, classes) numpy, from a file written by `export_ort_dynamic`."""

    def __init__(self, path: str | Path, *, threads: int = 1, precise: bool | None = None) -> None:
        self.path = Path(path)
        self.weight_dtype = read_layer_map(self.path)["weight_dtype"]
        self.precise = needs_precise(self.weight_dtype) if precise is None else bool(precise)
        self.threads = threads
        self.session = ort_session(self.path, threads=threads, precise=self.precise)

    def run(self, batch) -> np.ndarray:
        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: _numpy(batch)})
        return logits


@dataclass(frozen=True)
class DynamicFusion:
    """Per quantized layer, the node ONNX Runtime's optimised graph runs it as."""

    layers: dict[str, str]  # layer -> op type ("" when its weights were not found)
    op_counts: dict[str, int] = field(default_factory=dict)

    @property
    def integer_layers(self) -> list[str]:
        return [name for name, op in self.layers.items() if op in INTEGER_OPS]

    @property
    def float_layers(self) -> list[str]:
        return [name for name, op in self.layers.items() if op not in INTEGER_OPS]

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({"layers": self.layers, "op_counts": self.op_counts,
                            "integer_layers": self.integer_layers, "float_layers": self.float_layers})


def _reader(model, initializer: str) -> str:
    """The op type of the node reading `initializer`, or a copy ONNX Runtime made of it (with the precise
    option it rewrites s8 weights as u8 + 128 under the name `<initializer>_s8_2_u8`)."""
    for node in model.graph.node:
        if any(name == initializer or name.startswith(f"{initializer}_") for name in node.input):
            return node.op_type
    return ""


def ort_dynamic_fusion(path: str | Path, *, precise: bool | None = None) -> DynamicFusion:
    """ONNX Runtime's optimised graph of a dynamic INT8 file (SessionOptions.optimized_model_filepath),
    mapped back to quantlens layers through their weight initializers."""
    import onnx

    meta = read_layer_map(path)
    precise = needs_precise(meta["weight_dtype"]) if precise is None else precise
    with tempfile.TemporaryDirectory(prefix="quantlens-dyn-opt-") as tmp:
        optimized_path = Path(tmp) / "optimized.onnx"
        ort_session(path, precise=precise, optimized_model_path=optimized_path)
        optimized = onnx.load(str(optimized_path))
    layers = {layer: _reader(optimized, init) for layer, init in meta["layers"].items()}
    counts = Counter(n.op_type for n in optimized.graph.node)
    return DynamicFusion(layers, dict(sorted(counts.items())))
