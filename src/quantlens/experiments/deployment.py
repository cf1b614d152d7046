"""Deploy a recipe with quantlens's own scales and measure it like a simulated format.

For an entry with `deploy: [onnxruntime, openvino]`: the calibrated fake-quant model is written as
an ONNX QDQ file (int8 weights, int32 biases, quantlens's activation scales; the runtime never
re-calibrates), each runtime runs it on the whole evaluation split, and the deployed predictions
are paired with FP32's, with the simulation's and with the deployment-faithful simulation's (the
fake-quant model computing what ONNX Runtime computes: dividing QuantizeLinear, exact int32
accumulators, requantization; `backends.qdq.faithful`): accuracy difference with its interval
and McNemar's test, and top-1 agreement. A sample of the evaluation images also goes through the
layer-by-layer agreement check (integer codes per quantized tensor, logits in LSB), and what each
runtime fused into integer kernels is recorded. Latency at one batch size (median of timed runs
after warm-up) and the file's size and sha256 complete the record.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from quantlens import events
from quantlens.backends.onnx_export import export_onnx
from quantlens.backends.qdq import (
    OpenVinoQdqRunner,
    OrtQdqRunner,
    check_agreement,
    export_qdq,
    faithful_model,
    ort_fusion,
)
from quantlens.data import PreparedData
from quantlens.experiments.record import RunRecord
from quantlens.experiments.spec import ExperimentSpec
from quantlens.metrics.classification import Predictions, classification_metrics
from quantlens.metrics.paired import paired_comparison
from quantlens.train import predict, predict_with

LATENCY_BATCH = 64  # the batch the deployed latency is timed at
LATENCY_WARMUP, LATENCY_RUNS = 2, 7
AGREEMENT_BATCH = 64


@dataclass(frozen=True)
class DeployedRow:
    """One runtime's figures for one recipe; fractions, latency in milliseconds."""

    runtime: str
    top1: float
    top1_delta: float  # vs FP32, fraction
    top1_delta_ci: list
    mcnemar_p: float
    vs_simulated_delta: float  # deployed - simulated top-1, fraction
    vs_simulated_ci: list
    vs_simulated_p: float
    agreement_with_simulated: float  # share of samples with the simulation's top-1 class
    vs_faithful_delta: float  # deployed - deployment-faithful simulation (ONNX Runtime's integer arithmetic)
    vs_faithful_ci: list
    agreement_with_faithful: float
    latency_ms: float
    latency_iqr_ms: float
    latency_batch: int
    size_bytes: int
    sha256: str
    deltas: dict  # every paired delta vs FP32 by metric (binary tasks: sensitivity, specificity, auroc)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _runner(runtime: str, path, threads: int, exact: bool = True):
    if runtime == "onnxruntime":  # exact: u8 x u8 integer kernels where the CPU lacks VNNI
        return OrtQdqRunner(path, threads=threads, precise=None if exact else False)
    return OpenVinoQdqRunner(path, threads=threads)


def file_size_and_sha256(path) -> tuple[int, str]:
    data = path.read_bytes()  # the FP32 export holds its weights inline (external_data=False)
    return len(data), hashlib.sha256(data).hexdigest()


def _latency(run, example: torch.Tensor) -> tuple[float, float]:
    """(median, IQR) in ms of `run(example)` after warm-up."""
    for _ in range(LATENCY_WARMUP):
        run(example)
    times = []
    for _ in range(LATENCY_RUNS):
        start = time.perf_counter()
        run(example)
        times.append((time.perf_counter() - start) * 1e3)
    q1, _, q3 = statistics.quantiles(times, n=4)
    return statistics.median(times), q3 - q1


def deploy_fp32(model: nn.Module, runtimes: tuple[str, ...], spec: ExperimentSpec, data: PreparedData,
                eval_idx: np.ndarray, fp32: Predictions, record: RunRecord, threads: int = 1) -> list[dict]:
    """The FP32 baseline on the same runtimes (`quantization/fp32-deployed/`): the float model's ONNX file
    evaluated on the evaluation split (its top-1 and agreement with PyTorch's FP32, a check of the export),
    latency at the deployed recipes' batch and size on disk, so that each deployed row has its reference."""
    model = model.eval().cpu()
    example = next(x for x, _, _ in data.batches(eval_idx[:LATENCY_BATCH], LATENCY_BATCH))
    export = export_onnx(model, example, record.path("quantization/fp32-deployed"), backend="FP32 deployment")
    size, digest = file_size_and_sha256(export.path)
    rows = []
    for runtime in runtimes:
        runner = _runner(runtime, export.path, threads, exact=False)  # float graph: no integer kernels to pick
        predictions = predict_with(runner.run, data, eval_idx, spec.eval.batch_size,
                                   description=f"FP32 on {runtime}")
        median, iqr = _latency(runner.run, example)
        rows.append({"runtime": runtime, "top1": float(predictions.correct.mean()),
                     "agreement_with_pytorch": float(np.mean(predictions.predicted == fp32.predicted)),
                     "latency_ms": median, "latency_iqr_ms": iqr, "latency_batch": len(example),
                     "size_bytes": size, "sha256": digest})
        events.note(f"FP32 on {runtime}: top1 {rows[-1]['top1']:.4f}, latency {median:.1f} ms at batch "
                    f"{len(example)}")
    record.write_json("quantization/fp32-deployed/deployed.json", rows)
    return rows


def deploy_recipe(qmodel: nn.Module, runtimes: tuple[str, ...], folder: str, spec: ExperimentSpec,
                  data: PreparedData, eval_idx: np.ndarray, fp32: Predictions, simulated: Predictions,
                  record: RunRecord, threads: int = 1) -> list[DeployedRow]:
    """Export `qmodel` once (`quantization/<folder>/model.qdq.onnx`) and evaluate it on each runtime."""
    qmodel = qmodel.eval().cpu()
    example = next(x for x, _, _ in data.batches(eval_idx[:LATENCY_BATCH], LATENCY_BATCH))
    export = export_qdq(qmodel, example, record.path(f"quantization/{folder}/model.qdq.onnx"))
    record.write_json(f"quantization/{folder}/export.json", export.to_dict())
    agreement_idx = eval_idx[:max(spec.analysis.compliance_samples, AGREEMENT_BATCH)]
    batches = [(x, y) for x, y, _ in data.batches(agreement_idx, AGREEMENT_BATCH)]
    agreement = check_agreement(qmodel, export.path, [x for x, _ in batches], labels=[y for _, y in batches],
                                openvino="openvino" in runtimes, threads=threads)
    record.write_json(f"quantization/{folder}/agreement.json", agreement.to_dict())
    faithful = faithful_model(qmodel, export.path, ort_fusion(export.path, precise=agreement.ort_precise))
    faithful_predictions = predict(faithful, data, eval_idx, spec.eval.batch_size,
                                   description="deployment-faithful simulation")
    faithful_predictions.save(record.path(f"quantization/{folder}/faithful.npz"))
    rows = []
    for runtime in runtimes:
        runner = _runner(runtime, export.path, threads)
        predictions = predict_with(runner.run, data, eval_idx, spec.eval.batch_size,
                                   description=f"deployed on {runtime}")
        predictions.save(record.path(f"quantization/{folder}/deployed-{runtime}.npz"))
        metrics = classification_metrics(predictions, data.source.class_names,
                                         positive_class=spec.eval.positive_class, ece_bins=spec.eval.ece_bins)
        vs_fp32 = paired_comparison(fp32, predictions, confidence=spec.analysis.confidence,
                                    positive_class=spec.eval.positive_class)
        vs_sim = paired_comparison(simulated, predictions, confidence=spec.analysis.confidence,
                                   positive_class=spec.eval.positive_class)
        vs_faithful = paired_comparison(faithful_predictions, predictions, confidence=spec.analysis.confidence,
                                        positive_class=spec.eval.positive_class)
        median, iqr = _latency(runner.run, example)
        row = DeployedRow(runtime, metrics["top1"], vs_fp32["top1_delta"], vs_fp32["top1_delta_ci"],
                          vs_fp32["mcnemar_p"], vs_sim["top1_delta"], vs_sim["top1_delta_ci"], vs_sim["mcnemar_p"],
                          vs_sim["prediction_agreement"], vs_faithful["top1_delta"], vs_faithful["top1_delta_ci"],
                          vs_faithful["prediction_agreement"], median, iqr, len(example), export.size_bytes,
                          export.sha256, vs_fp32["deltas"])
        record.write_json(f"quantization/{folder}/deployed-{runtime}.json",
                          {**row.to_dict(), "metrics": metrics, "paired_vs_fp32": vs_fp32,
                           "paired_vs_simulated": vs_sim, "paired_vs_faithful": vs_faithful})
        events.note(f"deployed on {runtime}: top1 {row.top1:.4f} (simulated {simulated.correct.mean():.4f}, "
                    f"agreement {row.agreement_with_simulated:.4f}; deployment-faithful simulation "
                    f"{faithful_predictions.correct.mean():.4f}, agreement {row.agreement_with_faithful:.4f})")
        rows.append(row)
    return rows
