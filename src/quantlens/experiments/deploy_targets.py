"""What `deploy:` builds for one calibrated recipe on each runtime, with quantlens's own scales.

Static activation ranges (calibrated observers): one ONNX QDQ file, run by ONNX Runtime and OpenVINO
(the layer-by-layer agreement check, integer codes per quantized tensor and logits in LSB, and what
each runtime fused go into `agreement.json`), and on PyTorch a .pt2 file of torchao's pt2e x86 INT8
flow with the same scales, compiled by inductor (`backends.pt2e`). Dynamic activation ranges
(`observer: dynamic`, Linear layers): ONNX Runtime runs an ONNX file whose Linears become
DynamicQuantizeMatMul with quantlens's int8 weights; PyTorch runs torchao's dynamic INT8 with the
same weights (`backends.dynamic_int8`).

Each artefact comes with the simulation of its runtime's own arithmetic where one is modelled
(`faithful`): ONNX Runtime's QDQ kernels (`backends.qdq.faithful`), OpenVINO's INT8 CPU kernels
(`backends.qdq.openvino_faithful`: oneDNN's saturating int16 pairs without VNNI, its fused
requantization), ONNX Runtime's dynamic kernels and torchao's (`backends.dynamic_int8.faithful`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from quantlens import events
from quantlens.backends.base import BackendError
from quantlens.nn.convert import quant_wrappers

# deploy: runtime name -> the dynamic INT8 target that runs it
DYNAMIC_TARGETS = {"onnxruntime": "onnxruntime", "pytorch": "torchao"}


@dataclass
class Artefact:
    """One runtime's deployed model: `run(batch)` -> float32 logits (B, classes) numpy."""

    runtime: str
    kind: str  # what was deployed, for the record: "ONNX QDQ", "ONNX dynamic INT8", ...
    run: Callable[[torch.Tensor], np.ndarray]
    faithful: nn.Module | None  # the simulation of this runtime's arithmetic (None: not modelled)
    faithful_of: str | None  # whose arithmetic `faithful` computes
    size_bytes: int | None  # the file on disk (None: an in-memory model)
    sha256: str | None
    records: dict[str, dict] = field(default_factory=dict)  # JSON files for the run folder, by name


def is_dynamic(qmodel: nn.Module) -> bool:
    """True when any activation quantizer measures its range on every batch."""
    return any(not q.uses_static_range for _, w in quant_wrappers(qmodel) for q in w.activation_quantizers())


def check_runtimes(model: nn.Module, plans: dict, runtimes: tuple[str, ...]) -> None:
    """BackendError naming the first layer and role a runtime cannot execute as planned, before any work."""
    dynamic = any(spec is not None and not spec.static for plan in plans.values()
                  for spec in (plan.inputs, plan.outputs))
    if not dynamic:
        from quantlens.backends.qdq import check_deployable  # noqa: PLC0415  (ONNX only when deploying)

        check_deployable(plans)  # the formats the QDQ file holds are those PyTorch x86 INT8 runs too
        if "pytorch" in runtimes:
            from quantlens.backends.pt2e.api import load_torchao  # noqa: PLC0415

            load_torchao()  # MissingPackageError naming the install command, before any work
        return
    from quantlens.backends.dynamic_int8 import check_plans  # noqa: PLC0415

    if "pytorch" in runtimes:
        from quantlens.backends.pt2e.api import load_torchao  # noqa: PLC0415

        load_torchao()
    for runtime in runtimes:
        if runtime not in DYNAMIC_TARGETS:
            raise BackendError(f"dynamic activation ranges deploy on {' and '.join(DYNAMIC_TARGETS)}, not {runtime} "
                               "(calibrate static ranges for a QDQ file)")
        check_plans(model, plans, DYNAMIC_TARGETS[runtime])


def build_artefacts(qmodel: nn.Module, runtimes: tuple[str, ...], folder: Path, example: torch.Tensor,
                    batches: list[tuple[torch.Tensor, torch.Tensor]], threads: int) -> list[Artefact]:
    """Deploy `qmodel` (eval, CPU) on each runtime. `folder`: where files go; `example`: a batch the
    model takes; `batches`: (x, y) pairs for the layer-by-layer agreement check."""
    if is_dynamic(qmodel):
        return [_dynamic(qmodel, runtime, folder, example, batches, threads) for runtime in runtimes]
    built = _static_qdq(qmodel, tuple(r for r in runtimes if r != "pytorch"), folder, example, batches, threads)
    if "pytorch" in runtimes:
        built.append(_pt2e(qmodel, folder, example, threads))
    return sorted(built, key=lambda artefact: runtimes.index(artefact.runtime))  # in the order asked for


def _static_qdq(qmodel: nn.Module, runtimes: tuple[str, ...], folder: Path, example: torch.Tensor,
                batches: list[tuple[torch.Tensor, torch.Tensor]], threads: int) -> list[Artefact]:
    from quantlens.backends.qdq import (  # noqa: PLC0415  (ONNX only when deploying)
        OpenVinoQdqRunner,
        OrtQdqRunner,
        check_agreement,
        export_qdq,
        faithful_model,
        ort_fusion,
    )

    if not runtimes:
        return []
    export = export_qdq(qmodel, example, folder / "model.qdq.onnx")
    agreement = check_agreement(qmodel, export.path, [x for x, _ in batches], labels=[y for _, y in batches],
                                openvino="openvino" in runtimes, threads=threads)
    records = {"export.json": export.to_dict(), "agreement.json": agreement.to_dict()}
    artefacts = []
    for runtime in runtimes:
        if runtime == "onnxruntime":  # exact u8 x u8 kernels where the CPU lacks VNNI (the default ones saturate)
            runner = OrtQdqRunner(export.path, threads=threads, precise=None)
            faithful = faithful_model(qmodel, export.path, ort_fusion(export.path, precise=agreement.ort_precise))
            of = "ONNX Runtime's QDQ kernels"
        else:
            runner = OpenVinoQdqRunner(export.path, threads=threads)
            faithful, of = _openvino_faithful(qmodel, export.path), "OpenVINO's INT8 CPU kernels"
        artefacts.append(Artefact(runtime, "ONNX QDQ", runner.run, faithful, of, export.size_bytes, export.sha256,
                                  records))
        records = {}  # written once
    return artefacts


def _openvino_faithful(qmodel: nn.Module, path: Path) -> nn.Module | None:
    """OpenVINO's arithmetic on this file, or None (said once) for a graph the simulation does not model."""
    from quantlens.backends.qdq import openvino_faithful_model  # noqa: PLC0415

    try:
        return openvino_faithful_model(qmodel, path)
    except BackendError as error:
        events.warn(f"OpenVINO's arithmetic is not simulated for this model ({error}); its deployed row is paired "
                    "with FP32 and the fake-quant simulation only")
        return None


def _pt2e(qmodel: nn.Module, folder: Path, example: torch.Tensor, threads: int) -> Artefact:
    """PyTorch x86 INT8: torchao's pt2e flow with quantlens's scales, a .pt2 file compiled by inductor. No
    simulation of its kernels' arithmetic is modelled (faithful None); without VNNI its u8 x s8 kernels add
    pairs of products in saturating int16 (7-bit weights avoid it; the record's notes say so)."""
    from quantlens.backends.pt2e import Pt2eRunner  # noqa: PLC0415  (torchao only when deploying)

    runner = Pt2eRunner(qmodel, example, folder / "model.pt2e-int8.pt2", threads=threads)
    return Artefact("pytorch", "pt2e x86 INT8 (inductor)", runner.run, None, None, runner.size_bytes, runner.sha256,
                    {"pt2e.json": runner.to_dict()})


def _dynamic(qmodel: nn.Module, runtime: str, folder: Path, example: torch.Tensor,
             batches: list[tuple[torch.Tensor, torch.Tensor]], threads: int) -> Artefact:
    from quantlens.backends.dynamic_int8 import check_dynamic_agreement, deploy_dynamic_int8  # noqa: PLC0415

    if runtime not in DYNAMIC_TARGETS:
        raise BackendError(f"dynamic activation ranges deploy on {' and '.join(DYNAMIC_TARGETS)}, not {runtime}")
    deployment = deploy_dynamic_int8(qmodel, DYNAMIC_TARGETS[runtime], example_input=example, folder=folder,
                                     threads=threads)
    agreement = check_dynamic_agreement(qmodel, deployment, [x for x, _ in batches], labels=[y for _, y in batches])
    kind = "ONNX dynamic INT8" if runtime == "onnxruntime" else "torchao dynamic INT8"
    return Artefact(runtime, kind, deployment.run, deployment.faithful, deployment.target.runtime,
                    deployment.size_bytes, deployment.sha256,
                    {f"agreement-{runtime}.json": {"deployment": deployment.to_dict(),
                                                   "agreement": agreement.to_dict()}})
