"""One call from a fake-quant model to a deployed dynamic INT8 model, its faithful twin and its agreement.

    deployment = deploy_dynamic_int8(qmodel, "onnxruntime", example_input=x, folder=work_dir)
    deployment.run(batch)                                  # float32 logits (B, classes), numpy
    report = check_dynamic_agreement(qmodel, deployment, batches, labels=labels, float_model=model)

Targets: "onnxruntime" (an ONNX file in `folder`, run by ONNX Runtime's CPU provider) and "torchao"
(an in-memory PyTorch model). Both read quantlens's own int8 weight codes and scales.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from quantlens import events
from quantlens.atomic import to_jsonable
from quantlens.backends.base import BackendError
from quantlens.backends.dynamic_int8.agreement import DeployedAgreement, compare_deployed
from quantlens.backends.dynamic_int8.faithful import faithful_model
from quantlens.backends.dynamic_int8.ort_export import WeightDtype, export_ort_dynamic
from quantlens.backends.dynamic_int8.ort_runtime import OrtDynamicRunner, ort_dynamic_fusion
from quantlens.backends.dynamic_int8.targets import DynamicTarget, get_target
from quantlens.backends.dynamic_int8.torchao_deploy import TorchaoDynamicRunner, torchao_model

ONNX_NAME = "model.dynamic-int8.onnx"


@dataclass
class DynamicDeployment:
    """A deployed model: `run(batch)`, the faithful simulation, the artefact (ONNX file or None) and details
    (export figures, ONNX Runtime's fusion per layer, or the torchao weight replacement counts)."""

    target: DynamicTarget
    runner: Any  # OrtDynamicRunner | TorchaoDynamicRunner
    faithful: nn.Module
    artefact: Path | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def run(self, batch) -> np.ndarray:
        return self.runner.run(batch)

    @property
    def size_bytes(self) -> int | None:
        """The ONNX file's size (None: torchao's model lives in memory)."""
        return self.details["export"]["size_bytes"] if "export" in self.details else None

    @property
    def sha256(self) -> str | None:
        return self.details["export"]["sha256"] if "export" in self.details else None

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({"target": self.target.name, "runtime": self.target.runtime,
                            "activations": self.target.formula, "artefact": self.artefact, **self.details})


def deploy_dynamic_int8(qmodel: nn.Module, target: str | DynamicTarget = "onnxruntime", *,
                        example_input: torch.Tensor | None = None, folder: str | Path | None = None,
                        threads: int = 1, weight_dtype: WeightDtype = "int8") -> DynamicDeployment:
    """Deploy a fake-quant model simulating `target` (recipe.py). onnxruntime needs `example_input` (a
    batch the model takes) and `folder` (where the ONNX file goes); weight_dtype: its weight container."""
    target = get_target(target)
    if target.name == "onnxruntime":
        if example_input is None or folder is None:
            raise BackendError("dynamic INT8 on onnxruntime needs example_input (a batch) and folder (for the "
                               "ONNX file)")
        exported = export_ort_dynamic(qmodel, example_input, Path(folder) / ONNX_NAME, weight_dtype=weight_dtype)
        runner = OrtDynamicRunner(exported.path, threads=threads)
        fusion = ort_dynamic_fusion(exported.path, precise=runner.precise)
        integer = fusion.integer_layers
        events.note(f"ONNX Runtime runs {len(integer)} of {len(fusion.layers)} quantized Linear layers as integer "
                    f"kernels ({', '.join(sorted(set(fusion.layers.values())))})")
        if fusion.float_layers:
            events.warn(f"ONNX Runtime left {len(fusion.float_layers)} quantized layer(s) unfused or unfound: "
                        f"{', '.join(fusion.float_layers[:5])}")
        details = {"export": exported.to_dict(), "ort_fusion": fusion.to_dict(), "ort_precise": runner.precise}
        return DynamicDeployment(target, runner, faithful_model(qmodel, target, weight_dtype=weight_dtype),
                                 exported.path, details)
    deployment = torchao_model(qmodel)
    runner = TorchaoDynamicRunner(deployment, threads=threads)
    return DynamicDeployment(target, runner, faithful_model(qmodel, target), None,
                             {"torchao": deployment.to_dict()})


def check_dynamic_agreement(qmodel: nn.Module, deployment: DynamicDeployment, batches: Iterable[torch.Tensor], *,
                            labels: Iterable[torch.Tensor] | None = None,
                            float_model: nn.Module | None = None) -> DeployedAgreement:
    """The deployed model against the fake-quant simulation and the faithful one, on the same batches."""
    return compare_deployed(qmodel, deployment.run, batches, runtime=deployment.target.name,
                            faithful=deployment.faithful, float_model=float_model, labels=labels)
