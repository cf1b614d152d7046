"""The evaluation stage: FP32 predictions on the evaluation samples, their metrics, `metrics.json`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from quantlens.experiments.stages.base import STAGES, RunContext, Stage
from quantlens.metrics.classification import ClassificationMetrics, classification_metrics
from quantlens.train import predict

PREDICTIONS = "predictions.npz"


@dataclass(frozen=True)
class EvaluationResult:
    """FP32 on the evaluation split: which split and why, the metrics, and the model evaluated
    (its preprocessing, parameter count and where its weights came from)."""

    FILE: ClassVar[str] = "metrics.json"

    split: str
    split_reason: str
    metrics: ClassificationMetrics
    model: dict

    def to_dict(self) -> dict:
        return {"split": self.split, "split_reason": self.split_reason, **self.metrics.to_dict(), "model": self.model}

    @classmethod
    def from_dict(cls, data: dict) -> EvaluationResult:
        return cls(data["split"], data["split_reason"], ClassificationMetrics.from_dict(data), data["model"])


def evaluate(ctx: RunContext) -> EvaluationResult:
    spec = ctx.spec
    predictions = predict(ctx.setup.evaluation_model, ctx.data, ctx.eval_idx, spec.eval.batch_size)
    predictions.save(ctx.record.path(PREDICTIONS))
    ctx.shared["fp32_predictions"] = predictions  # what simulated formats are paired against
    metrics = classification_metrics(predictions, ctx.source.class_names, positive_class=spec.eval.positive_class,
                                     ece_bins=spec.eval.ece_bins)
    return EvaluationResult(ctx.eval_split, ctx.eval_reason, ClassificationMetrics.from_dict(metrics),
                            ctx.model_info)


STAGES.add("eval", Stage(
    "eval",
    order=20,
    result_type=EvaluationResult,
    file=EvaluationResult.FILE,
    enabled=lambda spec: spec.eval.enabled,
    run=evaluate,
))
