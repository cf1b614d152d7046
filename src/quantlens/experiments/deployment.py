"""Deploy a recipe with quantlens's own scales and measure it like a simulated format.

For an entry with `deploy: [...]` (or the recipe chosen on the selection split): the calibrated
fake-quant model is deployed on each runtime (`deploy_targets`: an ONNX QDQ file for static ranges on
ONNX Runtime and OpenVINO; dynamic INT8 on ONNX Runtime and PyTorch), each runtime runs it on the
whole evaluation split, and the deployed predictions are paired with FP32's, with the simulation's
and with the simulation of that runtime's own arithmetic (`faithful`): accuracy difference with its
interval and McNemar's test, and top-1 agreement. Latency at one batch size (median of timed runs
after warm-up) and the file's size and sha256 complete the record. FP32 runs on the same runtimes
(`deploy_fp32`) as the reference for latency and size.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from quantlens import events
from quantlens.backends.onnx_export import export_onnx
from quantlens.backends.qdq import OpenVinoQdqRunner, OrtQdqRunner
from quantlens.data import PreparedData
from quantlens.experiments.deploy_targets import Artefact, build_artefacts
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
    vs_faithful_delta: float | None  # deployed - the simulation of this runtime's arithmetic (None: not modelled)
    vs_faithful_ci: list | None
    agreement_with_faithful: float | None
    latency_ms: float
    latency_iqr_ms: float
    latency_batch: int
    size_bytes: int | None  # None: an in-memory model (no file)
    sha256: str | None
    deltas: dict  # every paired delta vs FP32 by metric (binary tasks: sensitivity, specificity, auroc)
    artefact: str = "ONNX QDQ"  # what was deployed
    faithful_of: str | None = None  # whose arithmetic the faithful simulation computes

    def to_dict(self) -> dict:
        return dict(self.__dict__)


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


def file_size_and_sha256(path) -> tuple[int, str]:
    data = Path(path).read_bytes()  # ONNX files here hold their weights inline (external_data=False)
    return len(data), hashlib.sha256(data).hexdigest()


def _fp32_runner(runtime: str, model: nn.Module, path, threads: int):
    """(run, size on disk, sha256) of FP32 on `runtime`: its ONNX file on ONNX Runtime / OpenVINO, the
    module itself (eager, no file) on PyTorch."""
    if runtime == "pytorch":
        def run(batch: torch.Tensor) -> np.ndarray:
            with torch.no_grad():
                return model(batch).float().numpy()

        return run, None, None
    runner = (OrtQdqRunner(path, threads=threads) if runtime == "onnxruntime"
              else OpenVinoQdqRunner(path, threads=threads))
    return (runner.run, *file_size_and_sha256(path))


def deploy_fp32(model: nn.Module, runtimes: tuple[str, ...], spec: ExperimentSpec, data: PreparedData,
                eval_idx: np.ndarray, fp32: Predictions, record: RunRecord, threads: int = 1) -> list[dict]:
    """The FP32 baseline on the same runtimes (`quantization/fp32-deployed/`): the float model's ONNX file
    evaluated on the evaluation split (its top-1 and agreement with PyTorch's FP32, a check of the export),
    latency at the deployed recipes' batch and size on disk, so that each deployed row has its reference."""
    model = model.eval().cpu()
    example = next(x for x, _, _ in data.batches(eval_idx[:LATENCY_BATCH], LATENCY_BATCH))
    export = export_onnx(model, example, record.path("quantization/fp32-deployed"), backend="FP32 deployment")
    rows = []
    for runtime in runtimes:
        run, size, digest = _fp32_runner(runtime, model, export.path, threads)
        predictions = predict_with(run, data, eval_idx, spec.eval.batch_size, description=f"FP32 on {runtime}")
        median, iqr = _latency(run, example)
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
    """Deploy `qmodel` on each runtime (`deploy_targets.build_artefacts`, files in `quantization/<folder>/`)
    and evaluate each artefact on the evaluation split, paired with FP32, the simulation and the
    simulation of that runtime's own arithmetic."""
    qmodel = qmodel.eval().cpu()
    example = next(x for x, _, _ in data.batches(eval_idx[:LATENCY_BATCH], LATENCY_BATCH))
    agreement_idx = eval_idx[:max(spec.analysis.compliance_samples, AGREEMENT_BATCH)]
    batches = [(x, y) for x, y, _ in data.batches(agreement_idx, AGREEMENT_BATCH)]
    artefacts = build_artefacts(qmodel, runtimes, record.path(f"quantization/{folder}"), example, batches, threads)
    faithful_runs: dict[int, Predictions] = {}  # one evaluation per faithful model (ORT and OpenVINO may share it)
    rows = []
    for artefact in artefacts:
        for name, content in artefact.records.items():
            record.write_json(f"quantization/{folder}/{name}", content)
        faithful = None
        if artefact.faithful is not None:
            key = id(artefact.faithful)
            if key not in faithful_runs:
                faithful_runs[key] = predict(artefact.faithful, data, eval_idx, spec.eval.batch_size,
                                             description=f"simulating {artefact.faithful_of}")
                faithful_runs[key].save(record.path(f"quantization/{folder}/faithful-{artefact.runtime}.npz"))
            faithful = faithful_runs[key]
        rows.append(_evaluate(artefact, example, faithful, spec, data, eval_idx, fp32, simulated, folder, record))
    return rows


def _evaluate(artefact: Artefact, example: torch.Tensor, faithful: Predictions | None, spec: ExperimentSpec,
              data: PreparedData, eval_idx: np.ndarray, fp32: Predictions, simulated: Predictions, folder: str,
              record: RunRecord) -> DeployedRow:
    runtime = artefact.runtime
    predictions = predict_with(artefact.run, data, eval_idx, spec.eval.batch_size, description=f"deployed on {runtime}")
    predictions.save(record.path(f"quantization/{folder}/deployed-{runtime}.npz"))
    metrics = classification_metrics(predictions, data.source.class_names, positive_class=spec.eval.positive_class,
                                     ece_bins=spec.eval.ece_bins)

    def paired(reference: Predictions) -> dict:
        return paired_comparison(reference, predictions, confidence=spec.analysis.confidence,
                                 positive_class=spec.eval.positive_class)

    vs_fp32, vs_sim = paired(fp32), paired(simulated)
    vs_faithful = paired(faithful) if faithful is not None else None
    median, iqr = _latency(artefact.run, example)
    row = DeployedRow(runtime, metrics["top1"], vs_fp32["top1_delta"], vs_fp32["top1_delta_ci"], vs_fp32["mcnemar_p"],
                      vs_sim["top1_delta"], vs_sim["top1_delta_ci"], vs_sim["mcnemar_p"],
                      vs_sim["prediction_agreement"],
                      None if vs_faithful is None else vs_faithful["top1_delta"],
                      None if vs_faithful is None else vs_faithful["top1_delta_ci"],
                      None if vs_faithful is None else vs_faithful["prediction_agreement"],
                      median, iqr, len(example), artefact.size_bytes, artefact.sha256, vs_fp32["deltas"],
                      artefact.kind, artefact.faithful_of)
    record.write_json(f"quantization/{folder}/deployed-{runtime}.json",
                      {**row.to_dict(), "metrics": metrics, "paired_vs_fp32": vs_fp32, "paired_vs_simulated": vs_sim,
                       "paired_vs_faithful": vs_faithful})
    faithful_note = "" if faithful is None else (f"; simulation of {artefact.faithful_of} "
                                                 f"{faithful.correct.mean():.4f}, agreement "
                                                 f"{row.agreement_with_faithful:.4f}")
    events.note(f"deployed on {runtime} ({artefact.kind}): top1 {row.top1:.4f} (simulated "
                f"{simulated.correct.mean():.4f}, agreement {row.agreement_with_simulated:.4f}{faithful_note})")
    return row
