"""How well the simulation predicts the deployed QDQ model: logits, top-1 and per-layer integer codes.

The same batches go through the ordinary fake-quant model (`qmodel`), the deployment-faithful
model (`faithful.py`) and the runtimes (ONNX Runtime CPU; OpenVINO CPU optionally). Logit
differences are expressed in LSB of the final layer's accumulator, x_scale * w_scale[oc] of the
last quantized linear/conv (the unit one int32 step of its accumulator is worth), when the model
ends in one; otherwise in absolute units.

Per layer (ONNX Runtime only): a copy of the file exposes every QuantizeLinear output as a graph
output; the runtime's codes are compared with the codes each simulation feeds that quantizer
(max |diff| in LSB of that quantizer, fraction of codes that differ). The copy must fuse exactly
as the original (checked and reported), or the per-layer figures would describe another graph.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from quantlens import events
from quantlens.atomic import to_jsonable
from quantlens.backends.onnx_export import OUTPUT_NAME
from quantlens.backends.qdq import graph as g
from quantlens.backends.qdq.deploy import activation_codec
from quantlens.backends.qdq.export import read_layer_map
from quantlens.backends.qdq.faithful import FaithfulModel, faithful_model
from quantlens.backends.qdq.inspect import openvino_fusion, ort_fusion
from quantlens.backends.qdq.runners import OpenVinoQdqRunner, OrtQdqRunner
from quantlens.nn.convert import quant_wrappers, recording


@dataclass
class LayerCodes:
    """One QuantizeLinear node: the quantizers it implements and how the runtime's codes differ."""

    q_node: str
    quantizers: list[str]
    count: int = 0
    simulated_max_lsb: int = 0
    simulated_differ: int = 0
    faithful_max_lsb: int = 0
    faithful_differ: int = 0

    def to_dict(self) -> dict[str, Any]:
        n = max(self.count, 1)
        return {"q_node": self.q_node, "quantizers": self.quantizers, "codes": self.count,
                "simulated_max_lsb": self.simulated_max_lsb, "simulated_fraction_differ": self.simulated_differ / n,
                "faithful_max_lsb": self.faithful_max_lsb, "faithful_fraction_differ": self.faithful_differ / n}


@dataclass
class RuntimeAgreement:
    """One runtime against both simulations, over all samples."""

    runtime: str
    samples: int = 0
    top1_agree_simulated: int = 0
    top1_agree_faithful: int = 0
    logits_exact_faithful: int = 0
    logits: int = 0
    lsb_sum_simulated: float = 0.0
    lsb_max_simulated: float = 0.0
    lsb_sum_faithful: float = 0.0
    lsb_max_faithful: float = 0.0
    correct: int = 0

    def update(self, deployed: np.ndarray, simulated: np.ndarray, faithful: np.ndarray, lsb: np.ndarray,
               labels: np.ndarray | None) -> None:
        top = deployed.argmax(1)
        self.samples += len(deployed)
        self.logits += deployed.size
        self.top1_agree_simulated += int((top == simulated.argmax(1)).sum())
        self.top1_agree_faithful += int((top == faithful.argmax(1)).sum())
        self.logits_exact_faithful += int((deployed == faithful).sum())
        ds, df = np.abs(deployed - simulated) / lsb, np.abs(deployed - faithful) / lsb
        self.lsb_sum_simulated += float(ds.sum())
        self.lsb_sum_faithful += float(df.sum())
        self.lsb_max_simulated = max(self.lsb_max_simulated, float(ds.max()))
        self.lsb_max_faithful = max(self.lsb_max_faithful, float(df.max()))
        if labels is not None:
            self.correct += int((top == labels).sum())

    def to_dict(self, with_accuracy: bool) -> dict[str, Any]:
        n, m = max(self.samples, 1), max(self.logits, 1)
        out = {"runtime": self.runtime, "samples": self.samples,
               "top1_agreement_simulated": self.top1_agree_simulated / n,
               "top1_agreement_faithful": self.top1_agree_faithful / n,
               "logits_bit_exact_faithful": self.logits_exact_faithful / m,
               "mean_abs_logit_diff_lsb_simulated": self.lsb_sum_simulated / m,
               "max_abs_logit_diff_lsb_simulated": self.lsb_max_simulated,
               "mean_abs_logit_diff_lsb_faithful": self.lsb_sum_faithful / m,
               "max_abs_logit_diff_lsb_faithful": self.lsb_max_faithful}
        if with_accuracy:
            out["top1_accuracy"] = self.correct / n
        return out


@dataclass
class AgreementReport:
    """Simulated vs deployed, JSON-ready through `to_dict()`."""

    samples: int
    logit_unit: str
    runtimes: list[RuntimeAgreement]
    layers: list[LayerCodes]
    fusion_unchanged_by_probes: bool | None
    ort_precise: bool
    ort_fusion: dict[str, Any]
    openvino_fusion: dict[str, Any] | None = None
    accuracy: dict[str, float] = field(default_factory=dict)  # simulated / faithful top-1, when labels were given
    notes: list[str] = field(default_factory=list)

    def runtime(self, name: str) -> RuntimeAgreement:
        return next(r for r in self.runtimes if r.runtime == name)

    def to_dict(self) -> dict[str, Any]:
        labelled = bool(self.accuracy)
        return to_jsonable({"samples": self.samples, "logit_unit": self.logit_unit,
                            "runtimes": [r.to_dict(labelled) for r in self.runtimes],
                            "layers": [lc.to_dict() for lc in self.layers],
                            "fusion_unchanged_by_probes": self.fusion_unchanged_by_probes,
                            "ort_precise": self.ort_precise, "ort_fusion": self.ort_fusion,
                            "openvino_fusion": self.openvino_fusion, "accuracy": self.accuracy,
                            "notes": self.notes})


def logit_lsb(faithful: FaithfulModel, path: str | Path) -> tuple[np.ndarray, str]:
    """(LSB per class, unit) of the layer producing the logits: float32(x_scale * w_scale[oc])."""
    import onnx

    model = onnx.load(str(path))
    meta = read_layer_map(model)
    producer = g.GraphIndex.of(model.graph).producer.get(OUTPUT_NAME)
    for layer, names in meta["layers"].items():
        if producer is not None and producer.name in names:
            module = faithful.model.get_submodule(layer)
            if hasattr(module, "weight_scale") and len(module.input_qdq) == 1 and module.input_qdq[0].scale.dim() == 0:
                lsb = (module.input_qdq[0].scale * module.weight_scale).to(torch.float32).numpy()
                return lsb, f"LSB of {layer}'s int32 accumulator (x_scale * w_scale[class])"
    return np.ones(1, dtype=np.float32), "absolute logit units (the logits do not come from a quantized layer)"


def _simulated_codes(qmodel: nn.Module) -> dict[str, np.ndarray]:
    """Each activation quantizer's last codes in the stored container (u8 for int8_asym)."""
    out = {}
    for _, wrapper in quant_wrappers(qmodel):
        for q in wrapper.activation_quantizers():
            if q.record.last is None:
                continue
            y, params = q.record.last
            offset = activation_codec(q.spec.format, q.where).offset
            codes = torch.round(y / params.scale) + params.zero_point.to(torch.float32) + offset
            out[q.where] = codes.numpy()
    return out


def _probe_copy(path: Path, folder: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the file with every Q output exposed; returns (path, Q node -> output tensor)."""
    import onnx

    model = onnx.load(str(path))
    outputs = {n.name: n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    g.add_outputs(model, list(outputs.values()))
    probe = folder / "probes.onnx"
    onnx.save(model, str(probe))
    return probe, outputs


def check_agreement(qmodel: nn.Module, path: str | Path, batches: Iterable[torch.Tensor], *,
                    labels: Iterable[torch.Tensor] | None = None, openvino: bool = True,
                    precise: bool | None = None, per_layer: bool = True, threads: int = 1) -> AgreementReport:
    """Run `batches` (float32 (B, C, H, W)) through the simulations and the runtimes and compare.

    precise: ONNX Runtime's exact u8 x u8 kernels (None: exactly when the CPU lacks VNNI, where the
    default kernels saturate in int16 lanes). labels: optional (B,) class tensors, for accuracies."""
    path = Path(path)
    qmodel = qmodel.eval()
    ort_runner = OrtQdqRunner(path, threads=threads, precise=precise)
    fusion = ort_fusion(path, precise=ort_runner.precise)
    faithful = faithful_model(qmodel, path, fusion)
    lsb, unit = logit_lsb(faithful, path)
    meta = read_layer_map(path)
    runtimes = [RuntimeAgreement("onnxruntime")]
    ov_runner = OpenVinoQdqRunner(path, threads=threads) if openvino else None
    if ov_runner is not None:
        runtimes.append(RuntimeAgreement("openvino"))
    layers = [LayerCodes(q, list(ws)) for q, ws in meta["q_nodes"].items()]
    label_iter = iter(labels) if labels is not None else None
    accuracy = {"simulated": 0, "faithful": 0}
    notes = []
    with tempfile.TemporaryDirectory(prefix="quantlens-agreement-") as tmp:
        probe_runner, probe_names, unchanged = None, {}, None
        if per_layer:
            probe_path, probe_names = _probe_copy(path, Path(tmp))
            probe_fusion = ort_fusion(probe_path, precise=ort_runner.precise)
            unchanged = [f.runtime_op for f in probe_fusion.layers] == [f.runtime_op for f in fusion.layers]
            if not unchanged:
                notes.append("exposing the Q outputs changed what ONNX Runtime fuses: per-layer codes are indicative")
            probe_runner = OrtQdqRunner(probe_path, threads=threads, precise=ort_runner.precise)
        samples = 0
        batches = list(batches)
        with events.task("comparing simulated and deployed", total=len(batches), unit="batches") as progress:
            for batch in batches:
                samples += _compare_batch(batch, qmodel, faithful, ort_runner, ov_runner, probe_runner, probe_names,
                                          runtimes, layers, lsb, next(label_iter) if label_iter else None,
                                          accuracy, per_layer)
                progress.advance(1)
    return AgreementReport(samples=samples, logit_unit=unit, runtimes=runtimes, layers=layers,
                           fusion_unchanged_by_probes=unchanged, ort_precise=ort_runner.precise,
                           ort_fusion=fusion.to_dict(),
                           openvino_fusion=openvino_fusion(path).to_dict() if openvino else None,
                           accuracy={k: v / max(samples, 1) for k, v in accuracy.items()} if labels is not None
                           else {}, notes=notes)


def _compare_batch(batch, qmodel, faithful, ort_runner, ov_runner, probe_runner, probe_names, runtimes, layers,
                   lsb, labels, accuracy, per_layer) -> int:
    """One batch through everything; updates the running figures; returns the batch size."""
    batch = batch.detach().float().cpu()
    y = labels.numpy() if labels is not None else None
    with torch.no_grad(), recording(qmodel):
        simulated = qmodel(batch).numpy()
        sim_codes = _simulated_codes(qmodel) if per_layer else {}
    with torch.no_grad():
        fl = faithful(batch).numpy()
    runtimes[0].update(ort_runner.run(batch), simulated, fl, lsb, y)
    if ov_runner is not None:
        runtimes[1].update(ov_runner.run(batch), simulated, fl, lsb, y)
    if y is not None:
        accuracy["simulated"] += int((simulated.argmax(1) == y).sum())
        accuracy["faithful"] += int((fl.argmax(1) == y).sum())
    if probe_runner is not None:
        outs = probe_runner.outputs(batch, [probe_names[lc.q_node] for lc in layers])
        for lc in layers:
            _compare(lc, outs[probe_names[lc.q_node]], sim_codes, faithful.codes)
    return len(batch)


def _compare(lc: LayerCodes, deployed: np.ndarray, simulated: dict, faithful: dict) -> None:
    where = lc.quantizers[0]
    d = deployed.astype(np.int64)
    lc.count += d.size
    if where in simulated:
        diff = np.abs(d - simulated[where].astype(np.int64))
        lc.simulated_max_lsb = max(lc.simulated_max_lsb, int(diff.max()))
        lc.simulated_differ += int((diff > 0).sum())
    if where in faithful:
        diff = np.abs(d - faithful[where].numpy().astype(np.int64))
        lc.faithful_max_lsb = max(lc.faithful_max_lsb, int(diff.max()))
        lc.faithful_differ += int((diff > 0).sum())
