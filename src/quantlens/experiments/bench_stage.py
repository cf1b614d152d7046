"""The benchmark stage of an experiment: the prepared model on real backends, with the run's data.

Calibration batches come from the calibration samples (or the evaluation samples when no
simulation chose any), the agreement check uses evaluation samples, and the pipeline decodes
real files for image folders, or the dataset's own pixels encoded as PNG otherwise. The session
itself (`quantlens.bench.suite`) writes `benchmark/` in the run folder, every path in its JSON
relative to the run folder; its typed report is `quantlens.bench.suite.BenchmarkReport`.
"""

from __future__ import annotations

import numpy as np
import torch

from quantlens.bench.pipeline import EncodedImages
from quantlens.bench.suite import BenchmarkReport, BenchmarkSession
from quantlens.data import PreparedData
from quantlens.experiments.record import RunRecord
from quantlens.experiments.setup import Setup
from quantlens.experiments.spec import ExperimentSpec

__all__ = ["BenchmarkReport", "run_benchmark_stage"]

CALIBRATION_BATCH = 32


def _pipeline_images(data: PreparedData, indices: np.ndarray, count: int) -> EncodedImages:
    source = data.source
    chosen = indices[:count] if len(indices) >= count else np.resize(indices, count)
    if source.root is not None:
        return EncodedImages.from_files([source.root / source.ids[i] for i in chosen])
    arrays = [source.images[i] for i in chosen]
    return EncodedImages.from_arrays(arrays, description=f"images of {source.name}")


def run_benchmark_stage(spec: ExperimentSpec, setup: Setup, data: PreparedData, eval_idx: np.ndarray,
                        calib_idx: np.ndarray | None, record: RunRecord, console: object) -> BenchmarkReport:
    """Benchmark the experiment's model on `spec.benchmark`. `console` is not printed to: the
    session reports progress as `quantlens.events`, and its caveats are notes on the report."""
    del console
    config = spec.benchmark
    pool = calib_idx if calib_idx is not None and len(calib_idx) else eval_idx
    wanted = config.calibration_batches * CALIBRATION_BATCH
    # np.resize repeats a small pool cyclically up to the wanted number of samples
    calibration = [x for x, _, _ in data.batches(np.resize(pool, wanted), CALIBRATION_BATCH)]
    validation = torch.cat([x for x, _, _ in data.batches(eval_idx[:config.agreement_samples], 256)])
    p = data.preprocessing
    session = BenchmarkSession(setup.model, config, input_shape=(p.channels, *p.size), calibration=calibration,
                               validation=validation, images=_pipeline_images(data, eval_idx, config.stage_batch_size),
                               preprocessing=p, out_dir=record.path("benchmark"), run_dir=record.dir,
                               model_name=spec.model.name)
    return session.run()
