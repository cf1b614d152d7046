"""OpenVINO's side of the agreement check: the runner, its faithful simulation, and a copy of the QDQ
file with some QuantizeLinear outputs exposed (only when exposing them leaves OpenVINO's fusion as it is)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from quantlens.backends.base import BackendError
from quantlens.backends.onnx_export import OUTPUT_NAME
from quantlens.backends.qdq.openvino_faithful import OpenVinoFaithfulModel, openvino_faithful_model, openvino_runtime
from quantlens.backends.qdq.runners import OpenVinoQdqRunner


def q_outputs(model) -> dict[str, str]:
    """QuantizeLinear node -> its output tensor, in a loaded ONNX model."""
    return {n.name: n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}


class OpenVinoProbes:
    """The QDQ file on OpenVINO (the runner's config) with some Q outputs exposed as extra outputs;
    `unchanged` says whether OpenVINO still fuses it as the plain file."""

    def __init__(self, path: Path, q_nodes: list[str], runner: OpenVinoQdqRunner) -> None:
        import onnx
        import openvino as ov

        onnx_model = onnx.load(str(path))  # read once: Q outputs, node names, input shape
        outputs = q_outputs(onnx_model)
        self.names = {q: outputs[q] for q in q_nodes}
        self.core = ov.Core()
        self.model = self.core.read_model(str(path))
        if self.names:
            self.model.add_outputs(list(self.names.values()))
        self.config = dict(runner.runner.config)
        self.onnx_nodes = {n.name for n in onnx_model.graph.node}
        self._compiled: dict[tuple[int, ...], Any] = {}
        dims = [d.dim_value or 1 for d in onnx_model.graph.input[0].type.tensor_type.shape.dim]
        shape = (1, *dims[1:])
        self.unchanged = self._signature(self._compile(shape).get_runtime_model()) == \
            self._signature(runner.runtime_model(shape))

    def _compile(self, shape: tuple[int, ...]):
        compiled = self._compiled.get(shape)
        if compiled is None:
            static = self.model.clone()
            static.reshape({0: list(shape)})
            compiled = self._compiled[shape] = self.core.compile_model(static, "CPU", self.config)
        return compiled

    def _signature(self, runtime_model) -> list[tuple[str, tuple[str, ...]]]:
        """Executed ops and the file's nodes each absorbed (generated names and plumbing left out)."""
        out = []
        for op in runtime_model.get_ops():
            info = op.get_rt_info()
            kind = str(info["layerType"].astype(str)) if "layerType" in info else ""
            if kind in ("Input", "Output", "Reorder", "Const"):
                continue
            names = str(info["originalLayersNames"].astype(str)) if "originalLayersNames" in info else ""
            out.append((kind, tuple(sorted(n for n in names.split(",") if n in self.onnx_nodes))))
        return sorted(out)

    def run(self, batch: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(logits, Q node -> codes) of one batch."""
        x = batch.detach().float().cpu().contiguous().numpy()
        compiled = self._compile(tuple(x.shape))
        result = compiled.create_infer_request().infer([x])
        by_name = {o.get_any_name(): np.asarray(result[o]) for o in compiled.outputs}
        return by_name[OUTPUT_NAME], {q: by_name[t] for q, t in self.names.items()}


def openvino_side(path: Path, qmodel: nn.Module, threads: int, per_layer: bool, notes: list[str]
                   ) -> tuple[OpenVinoQdqRunner, OpenVinoFaithfulModel | None, OpenVinoProbes | None]:
    runner = OpenVinoQdqRunner(path, threads=threads)
    try:
        simulation = openvino_faithful_model(qmodel, path, openvino_runtime(path))
    except BackendError as exc:  # a graph it does not model: said in the report, compared with ONNX Runtime's
        notes.append(f"no OpenVINO-faithful simulation: {exc}")
        return runner, None, None
    notes.extend(f"OpenVINO-faithful simulation: {n}" for n in simulation.notes)
    if not per_layer:
        return runner, simulation, None
    probes = OpenVinoProbes(path, simulation.probe_safe_q_nodes(), runner)
    if not probes.unchanged:
        notes.append("exposing Q outputs changed what OpenVINO fuses: no per-layer OpenVINO codes")
        return runner, simulation, None
    return runner, simulation, probes
