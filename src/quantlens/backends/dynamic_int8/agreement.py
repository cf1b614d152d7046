"""How well the simulation predicts a deployed dynamic INT8 model: top-1 agreement, logit differences,
and (with labels) the deployed model's accuracy against the simulation's, as paired statistics.

    report = compare_deployed(qmodel, runner.run, batches, faithful=faithful, labels=labels, runtime="onnxruntime")
    report.to_dict()

The same batches (the same batch composition: ONNX Runtime's ranges are per input tensor, so a sample's
result depends on its batch) go through the fake-quant model, the deployment-faithful model (optional)
and the runtime. Logit differences are absolute (dynamic scales change with every batch, so there is no
fixed LSB), with the largest |logit| seen for scale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from quantlens import events
from quantlens.atomic import to_jsonable
from quantlens.metrics.paired import proportion_delta


@dataclass
class Against:
    """The runtime's logits against one simulation's, over all samples."""

    top1_agree: int = 0
    exact: int = 0  # logits bit-identical
    abs_sum: float = 0.0
    abs_max: float = 0.0

    def update(self, deployed: np.ndarray, simulated: np.ndarray) -> None:
        diff = np.abs(deployed.astype(np.float64) - simulated.astype(np.float64))
        self.top1_agree += int((deployed.argmax(1) == simulated.argmax(1)).sum())
        self.exact += int((deployed == simulated).sum())
        self.abs_sum += float(diff.sum())
        self.abs_max = max(self.abs_max, float(diff.max()) if diff.size else 0.0)

    def to_dict(self, samples: int, logits: int) -> dict[str, float]:
        n, m = max(samples, 1), max(logits, 1)
        return {"top1_agreement": self.top1_agree / n, "logits_bit_exact": self.exact / m,
                "mean_abs_logit_diff": self.abs_sum / m, "max_abs_logit_diff": self.abs_max}


@dataclass
class DeployedAgreement:
    """A runtime against the fake-quant simulation (and the faithful one), JSON-ready through `to_dict()`."""

    runtime: str
    samples: int = 0
    logits: int = 0
    max_abs_logit: float = 0.0
    simulated: Against = field(default_factory=Against)
    faithful: Against | None = None
    correct: dict[str, np.ndarray] = field(default_factory=dict)  # model -> (N,) bool, with labels

    def accuracy(self, model: str) -> float | None:
        right = self.correct.get(model)
        return None if right is None or not len(right) else float(right.mean())

    def paired(self, reference: str = "simulated", candidate: str = "deployed", confidence: float = 0.95):
        """Paired top-1 difference (candidate - reference; Newcombe interval, McNemar exact test), or None."""
        if reference not in self.correct or candidate not in self.correct:
            return None
        delta, _, _ = proportion_delta("top1", self.correct[reference], self.correct[candidate], confidence)
        return delta

    def to_dict(self) -> dict[str, Any]:
        out = {"runtime": self.runtime, "samples": self.samples, "max_abs_logit": self.max_abs_logit,
               "deployed_vs_simulated": self.simulated.to_dict(self.samples, self.logits)}
        if self.faithful is not None:
            out["deployed_vs_faithful"] = self.faithful.to_dict(self.samples, self.logits)
        if self.correct:
            out["top1_accuracy"] = {k: self.accuracy(k) for k in self.correct}
            deltas = {f"{c}_minus_{r}": self.paired(r, c) for r, c in (("simulated", "deployed"), ("float", "deployed"),
                                                                          ("float", "simulated"))}
            out["paired_top1"] = {k: d.to_dict() for k, d in deltas.items() if d is not None}
        return to_jsonable(out)


def _logits(module: nn.Module, batch: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return module(batch).detach().float().cpu().numpy()


def compare_deployed(qmodel: nn.Module, run: Callable[[torch.Tensor], np.ndarray], batches: Iterable[torch.Tensor], *,
                     runtime: str, faithful: nn.Module | None = None, float_model: nn.Module | None = None,
                     labels: Iterable[torch.Tensor] | None = None) -> DeployedAgreement:
    """Run `batches` through the simulation(s) and the deployed model (`run(batch)` -> logits) and compare.

    labels: (B,) class tensors, one per batch, for accuracies and paired statistics; float_model: the FP32
    model, for its accuracy on the same samples."""
    qmodel = qmodel.eval()
    report = DeployedAgreement(runtime, faithful=Against() if faithful is not None else None)
    label_iter = iter(labels) if labels is not None else None
    right: dict[str, list[np.ndarray]] = {}
    batches = list(batches)
    with events.task(f"comparing simulated and deployed ({runtime})", total=len(batches), unit="batches") as progress:
        for batch in batches:
            batch = batch.detach().float().cpu()
            deployed = np.asarray(run(batch), dtype=np.float32)
            simulated = _logits(qmodel, batch)
            report.samples += len(deployed)
            report.logits += deployed.size
            report.max_abs_logit = max(report.max_abs_logit, float(np.abs(deployed).max()))
            report.simulated.update(deployed, simulated)
            outputs = {"deployed": deployed, "simulated": simulated}
            if faithful is not None:
                outputs["faithful"] = _logits(faithful, batch)
                report.faithful.update(deployed, outputs["faithful"])
            if label_iter is not None:
                y = np.asarray(next(label_iter))
                if float_model is not None:
                    outputs["float"] = _logits(float_model, batch)
                for name, logits in outputs.items():
                    right.setdefault(name, []).append(logits.argmax(1) == y)
            progress.advance(1)
    report.correct = {k: np.concatenate(v) for k, v in right.items()}
    return report
