"""The model that replays the QDQ file as OpenVINO CPU executes it: plan once, then run the steps on
each batch, recording the codes of the quantizers OpenVINO materialises; and its constructor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from quantlens.backends.base import BackendError, cpu_has_int8_dot_product
from quantlens.backends.qdq import graph as g
from quantlens.backends.qdq.deploy import activation_codec
from quantlens.backends.qdq.export import read_layer_map
from quantlens.backends.qdq.openvino_faithful.fake_quant import f32
from quantlens.backends.qdq.openvino_faithful.ops import _NodeOps
from quantlens.backends.qdq.openvino_faithful.plan import _Planner
from quantlens.backends.qdq.openvino_faithful.runtime import OpenVinoRuntime, openvino_runtime
from quantlens.backends.qdq.openvino_faithful.values import _Value
from quantlens.nn.convert import quant_wrappers


class OpenVinoFaithfulModel(_Planner, _NodeOps, nn.Module):
    """The QDQ file as OpenVINO CPU executes it. `codes` maps each quantizer (`where`, the first one of
    each Q node) to the u8 codes of the last batch, for the Q nodes whose codes OpenVINO materialises
    (a residual's first Q is fused unrounded and has none); `notes` lists what is modelled unverified."""

    def __init__(self, path: str | Path, runtime: OpenVinoRuntime, *, saturate: bool | None = None) -> None:
        super().__init__()
        import onnx

        model = onnx.load(str(path))
        self.meta = read_layer_map(model)
        self.graph = model.graph
        self.index = g.GraphIndex.of(model.graph)
        self.runtime = runtime
        self.saturate = (not cpu_has_int8_dot_product()) if saturate is None else saturate
        self.codes: dict[str, torch.Tensor] = {}
        self.notes: list[str] = []
        self.q_where = {q: wheres[0] for q, wheres in self.meta["q_nodes"].items() if wheres}
        self.input_names = [i.name for i in self.graph.input if i.name not in self.index.initializers]
        self.output_name = self.graph.output[0].name
        self._steps: list = []
        self._plan()

    def probe_safe_q_nodes(self) -> list[str]:
        """Q nodes whose codes this simulation records and OpenVINO can expose as extra outputs without
        changing what it fuses: not the in-place operand of a fused residual (OpenVINO writes the
        convolution's result over that tensor; exposing it stops the Add from fusing)."""
        inplace = set()
        for kind, _, _, arg in self._steps:
            if kind == "dense" and arg.residual is not None:
                dq = self.index.producer.get(arg.residual[1])
                if dq is not None:
                    inplace.add(self.index.producer[dq.input[0]].name)
        recorded = [q for q in self.q_where if self._records(q)]
        return [q for q in recorded if q not in inplace]

    def _records(self, q: str) -> bool:
        for kind, _, _, arg in self._steps:
            if kind == "fq" and arg.name == q:
                return True
            if kind == "dense" and ((arg.out_q is not None and arg.out_q.name == q) or
                                    (arg.residual is not None and arg.residual[3] is not None
                                     and arg.residual[3].name == q)):
                return True
        return False

    # -- execution --

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The graph's output (float32) for its inputs (the file's order; one image batch for a classifier)."""
        if len(inputs) != len(self.input_names):
            raise BackendError(f"the QDQ file takes {len(self.input_names)} inputs, got {len(inputs)}")
        self.codes.clear()
        env: dict[str, _Value] = {n: _Value(x.detach().float().cpu()) for n, x in zip(self.input_names, inputs,
                                                                                        strict=True)}
        for kind, out, src, arg in self._steps:
            env[out] = getattr(self, f"_run_{kind}")(env, src, arg)
        return env[self.output_name].real()


def check_file_matches(qmodel: nn.Module, path: str | Path) -> None:
    """BackendError when the QDQ file's activation scales are not `qmodel`'s calibrated ones."""
    import onnx

    model = onnx.load(str(path))
    meta = read_layer_map(model)
    index = g.GraphIndex.of(model.graph)
    by_where = {q.where: q for _, w in quant_wrappers(qmodel) for q in w.activation_quantizers()}
    by_name = {n.name: n for n in model.graph.node}
    for q_name, wheres in meta["q_nodes"].items():
        node = by_name.get(q_name)
        quantizer = by_where.get(wheres[0]) if wheres else None
        if node is None or quantizer is None or quantizer.params is None:
            raise BackendError(f"{path}: quantizer {wheres[0] if wheres else q_name} is not in this model "
                               "(the file was exported from another model)")
        offset = activation_codec(quantizer.spec.format, quantizer.where).offset
        scale = quantizer.params.scale.detach().float().reshape(-1).numpy()
        zp = quantizer.params.zero_point.detach().reshape(-1).numpy().astype(np.int64) + offset
        if not (np.array_equal(index.array(node.input[1]).reshape(-1).astype(f32), scale)
                and np.array_equal(index.array(node.input[2]).reshape(-1).astype(np.int64), zp)):
            raise BackendError(f"{path}: {wheres[0]} has other scales than the model's (the file was exported "
                               "from another calibration)")


def openvino_faithful_model(qmodel: nn.Module, path: str | Path, runtime: OpenVinoRuntime | None = None, *,
                            saturate: bool | None = None) -> OpenVinoFaithfulModel:
    """The calibrated fake-quant model `qmodel` as OpenVINO's CPU plugin runs its QDQ export `path`.

    runtime: OpenVINO's runtime graph of the file (default: `openvino_runtime(path)`, compiles it);
    saturate: int16 pair saturation of the int8 dot products (default: when the CPU lacks VNNI/AMX)."""
    check_file_matches(qmodel, path)
    runtime = runtime if runtime is not None else openvino_runtime(path)
    return OpenVinoFaithfulModel(path, runtime, saturate=saturate).eval()
