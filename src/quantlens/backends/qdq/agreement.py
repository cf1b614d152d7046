"""How well the simulation predicts the deployed QDQ model: logits, top-1 and per-layer integer codes.

The same batches go through the ordinary fake-quant model (`qmodel`) and, per runtime, the
deployment-faithful simulation of that runtime: ONNX Runtime CPU against `faithful.py`, OpenVINO
CPU (optional) against `openvino_faithful`. Logit differences are expressed in LSB of the final
layer's accumulator, x_scale * w_scale[oc] of the last quantized linear/conv (the unit one int32
step of its accumulator is worth), when the model ends in one; otherwise in absolute units.

Per layer: a copy of the file exposes QuantizeLinear outputs as graph outputs; each runtime's codes
are compared with the codes each simulation feeds that quantizer (max |diff| in LSB of that
quantizer, fraction of codes that differ). The copy must fuse exactly as the original (checked and
reported), or the per-layer figures would describe another graph. ONNX Runtime: every Q output.
OpenVINO: the Q outputs its faithful simulation records, less the in-place operands of fused residual
Adds (exposing those stops OpenVINO fusing the Add) and less a residual's first Q (fused unrounded,
it has no codes); the probed model's logits are compared with the plain model's on every batch.
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
from quantlens.backends.qdq.openvino_faithful import OpenVinoFaithfulModel
from quantlens.backends.qdq.openvino_probes import OpenVinoProbes, openvino_side, q_outputs
from quantlens.backends.qdq.runners import OpenVinoQdqRunner, OrtQdqRunner
from quantlens.nn.convert import quant_wrappers, recording


@dataclass
class CodeStats:
    """One runtime's codes at one Q node against both simulations' codes."""

    count: int = 0
    simulated_max_lsb: int = 0
    simulated_differ: int = 0
    faithful_max_lsb: int = 0
    faithful_differ: int = 0

    def update(self, deployed: np.ndarray, simulated: np.ndarray | None, faithful: np.ndarray | None) -> None:
        d = deployed.astype(np.int64)
        self.count += d.size
        if simulated is not None:
            diff = np.abs(d - simulated.astype(np.int64))
            self.simulated_max_lsb = max(self.simulated_max_lsb, int(diff.max()))
            self.simulated_differ += int((diff > 0).sum())
        if faithful is not None:
            diff = np.abs(d - faithful.astype(np.int64))
            self.faithful_max_lsb = max(self.faithful_max_lsb, int(diff.max()))
            self.faithful_differ += int((diff > 0).sum())

    def to_dict(self) -> dict[str, Any]:
        n = max(self.count, 1)
        return {"codes": self.count, "simulated_max_lsb": self.simulated_max_lsb,
                "simulated_fraction_differ": self.simulated_differ / n, "faithful_max_lsb": self.faithful_max_lsb,
                "faithful_fraction_differ": self.faithful_differ / n}


@dataclass
class LayerCodes:
    """One QuantizeLinear node: the quantizers it implements and how the runtimes' codes differ.
    The flat fields are ONNX Runtime's; `openvino` holds OpenVINO's when it could be probed."""

    q_node: str
    quantizers: list[str]
    count: int = 0
    simulated_max_lsb: int = 0
    simulated_differ: int = 0
    faithful_max_lsb: int = 0
    faithful_differ: int = 0
    openvino: CodeStats | None = None

    def update(self, deployed: np.ndarray, simulated: np.ndarray | None, faithful: np.ndarray | None) -> None:
        stats = CodeStats(self.count, self.simulated_max_lsb, self.simulated_differ, self.faithful_max_lsb,
                          self.faithful_differ)
        stats.update(deployed, simulated, faithful)
        self.count, self.simulated_max_lsb, self.simulated_differ = (stats.count, stats.simulated_max_lsb,
                                                                     stats.simulated_differ)
        self.faithful_max_lsb, self.faithful_differ = stats.faithful_max_lsb, stats.faithful_differ

    def to_dict(self) -> dict[str, Any]:
        ort = CodeStats(self.count, self.simulated_max_lsb, self.simulated_differ, self.faithful_max_lsb,
                        self.faithful_differ).to_dict()
        return {"q_node": self.q_node, "quantizers": self.quantizers, **ort,
                "openvino": self.openvino.to_dict() if self.openvino is not None else None}


@dataclass
class RuntimeAgreement:
    """One runtime against both simulations, over all samples; `faithful_model` names the
    deployment-faithful simulation it was compared with (that runtime's own, when there is one)."""

    runtime: str
    faithful_model: str = ""
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
    correct_faithful: int = 0

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
            self.correct_faithful += int((faithful.argmax(1) == labels).sum())

    def to_dict(self, with_accuracy: bool) -> dict[str, Any]:
        n, m = max(self.samples, 1), max(self.logits, 1)
        out = {"runtime": self.runtime, "faithful_model": self.faithful_model, "samples": self.samples,
               "top1_agreement_simulated": self.top1_agree_simulated / n,
               "top1_agreement_faithful": self.top1_agree_faithful / n,
               "logits_bit_exact_faithful": self.logits_exact_faithful / m,
               "mean_abs_logit_diff_lsb_simulated": self.lsb_sum_simulated / m,
               "max_abs_logit_diff_lsb_simulated": self.lsb_max_simulated,
               "mean_abs_logit_diff_lsb_faithful": self.lsb_sum_faithful / m,
               "max_abs_logit_diff_lsb_faithful": self.lsb_max_faithful}
        if with_accuracy:
            out["top1_accuracy"] = self.correct / n
            out["top1_accuracy_faithful"] = self.correct_faithful / n
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
    openvino_fusion_unchanged_by_probes: bool | None = None
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
                            "openvino_fusion": self.openvino_fusion,
                            "openvino_fusion_unchanged_by_probes": self.openvino_fusion_unchanged_by_probes,
                            "accuracy": self.accuracy, "notes": self.notes})


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
    outputs = q_outputs(model)
    g.add_outputs(model, list(outputs.values()))
    probe = folder / "probes.onnx"
    onnx.save(model, str(probe))
    return probe, outputs


@dataclass
class _Runtimes:
    """What one comparison batch goes through besides the fake-quant model."""

    ort: OrtQdqRunner
    faithful: FaithfulModel
    ov: OpenVinoQdqRunner | None = None
    ov_faithful: OpenVinoFaithfulModel | None = None
    ort_probes: OrtQdqRunner | None = None
    ort_probe_names: dict[str, str] = field(default_factory=dict)
    ov_probes: OpenVinoProbes | None = None
    ov_probe_mismatch: int = 0


def check_agreement(qmodel: nn.Module, path: str | Path, batches: Iterable[torch.Tensor], *,
                    labels: Iterable[torch.Tensor] | None = None, openvino: bool = True,
                    precise: bool | None = None, per_layer: bool = True, threads: int = 1) -> AgreementReport:
    """Run `batches` (float32 (B, C, H, W)) through the simulations and the runtimes and compare.

    precise: ONNX Runtime's exact u8 x u8 kernels (None: exactly when the CPU lacks VNNI, where the
    default kernels saturate in int16 lanes). labels: optional (B,) class tensors, for accuracies.
    openvino: also OpenVINO CPU, against its own deployment-faithful simulation (`openvino_faithful`)."""
    path = Path(path)
    qmodel = qmodel.eval()
    ort_runner = OrtQdqRunner(path, threads=threads, precise=precise)
    fusion = ort_fusion(path, precise=ort_runner.precise)
    faithful = faithful_model(qmodel, path, fusion)
    lsb, unit = logit_lsb(faithful, path)
    meta = read_layer_map(path)
    notes: list[str] = []
    side = _Runtimes(ort_runner, faithful)
    runtimes = [RuntimeAgreement("onnxruntime", "onnxruntime")]
    if openvino:
        side.ov, side.ov_faithful, side.ov_probes = openvino_side(path, qmodel, threads, per_layer, notes)
        runtimes.append(RuntimeAgreement("openvino", "openvino" if side.ov_faithful is not None else "onnxruntime"))
    layers = [LayerCodes(q, list(ws)) for q, ws in meta["q_nodes"].items()]
    if side.ov_probes is not None:
        for lc in layers:
            if lc.q_node in side.ov_probes.names:
                lc.openvino = CodeStats()
    label_iter = iter(labels) if labels is not None else None
    accuracy = {"simulated": 0, "faithful": 0}
    if side.ov_faithful is not None:
        accuracy["openvino_faithful"] = 0
    with tempfile.TemporaryDirectory(prefix="quantlens-agreement-") as tmp:
        unchanged = None
        if per_layer:
            probe_path, side.ort_probe_names = _probe_copy(path, Path(tmp))
            probe_fusion = ort_fusion(probe_path, precise=ort_runner.precise)
            unchanged = [f.runtime_op for f in probe_fusion.layers] == [f.runtime_op for f in fusion.layers]
            if not unchanged:
                notes.append("exposing the Q outputs changed what ONNX Runtime fuses: per-layer codes are indicative")
            side.ort_probes = OrtQdqRunner(probe_path, threads=threads, precise=ort_runner.precise)
        samples = 0
        batches = list(batches)
        with events.task("comparing simulated and deployed", total=len(batches), unit="batches") as progress:
            for batch in batches:
                samples += _compare_batch(batch, qmodel, side, runtimes, layers, lsb,
                                          next(label_iter) if label_iter else None, accuracy, per_layer)
                progress.advance(1)
    if side.ov_probe_mismatch:
        notes.append(f"OpenVINO with exposed Q outputs gave other logits on {side.ov_probe_mismatch} samples: "
                     "its per-layer codes are indicative")
    return AgreementReport(samples=samples, logit_unit=unit, runtimes=runtimes, layers=layers,
                           fusion_unchanged_by_probes=unchanged, ort_precise=ort_runner.precise,
                           ort_fusion=fusion.to_dict(),
                           openvino_fusion=openvino_fusion(path).to_dict() if openvino else None,
                           openvino_fusion_unchanged_by_probes=(side.ov_probes.unchanged if side.ov_probes is not None
                                                                else None),
                           accuracy={k: v / max(samples, 1) for k, v in accuracy.items()} if labels is not None
                           else {}, notes=notes)


def _compare_batch(batch, qmodel, side: _Runtimes, runtimes, layers, lsb, labels, accuracy, per_layer) -> int:
    """One batch through everything; updates the running figures; returns the batch size."""
    batch = batch.detach().float().cpu()
    y = labels.numpy() if labels is not None else None
    with torch.no_grad(), recording(qmodel):
        simulated = qmodel(batch).numpy()
        sim_codes = _simulated_codes(qmodel) if per_layer else {}
    with torch.no_grad():
        fl = side.faithful(batch).numpy()
        ov_fl = side.ov_faithful(batch).numpy() if side.ov_faithful is not None else None
    runtimes[0].update(side.ort.run(batch), simulated, fl, lsb, y)
    if side.ov is not None:
        deployed = side.ov.run(batch)
        runtimes[1].update(deployed, simulated, ov_fl if ov_fl is not None else fl, lsb, y)
    if y is not None:
        accuracy["simulated"] += int((simulated.argmax(1) == y).sum())
        accuracy["faithful"] += int((fl.argmax(1) == y).sum())
        if ov_fl is not None:
            accuracy["openvino_faithful"] += int((ov_fl.argmax(1) == y).sum())
    if side.ort_probes is not None:
        outs = side.ort_probes.outputs(batch, [side.ort_probe_names[lc.q_node] for lc in layers])
        for lc in layers:
            where = lc.quantizers[0]
            faithful_codes = side.faithful.codes.get(where)
            lc.update(outs[side.ort_probe_names[lc.q_node]], sim_codes.get(where),
                      faithful_codes.numpy() if faithful_codes is not None else None)
    if side.ov_probes is not None:
        logits, codes = side.ov_probes.run(batch)
        side.ov_probe_mismatch += int((logits != deployed).any(1).sum())
        for lc in layers:
            if lc.openvino is not None:
                where = lc.quantizers[0]
                ov_codes = side.ov_faithful.codes.get(where)
                lc.openvino.update(codes[lc.q_node], sim_codes.get(where),
                                   ov_codes.numpy() if ov_codes is not None else None)
    return len(batch)
