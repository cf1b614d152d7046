"""The benchmark stage: the experiment's model on real backends, with the run's data.

Calibration batches come from the calibration samples (or the evaluation samples when no
simulation chose any), the agreement check uses evaluation samples, and the pipeline decodes
real files for image folders, or the dataset's own pixels encoded as PNG otherwise. The session
(`quantlens.bench.suite`) writes `benchmark/benchmark.json` itself, every path in it relative to
the run folder; its typed report is `quantlens.bench.suite.BenchmarkReport`.
"""

from __future__ import annotations

import numpy as np
import torch

from quantlens.bench.pipeline import EncodedImages
from quantlens.bench.suite import BenchmarkReport, BenchmarkSession
from quantlens.bench.suite.report import REPORT_FILE
from quantlens.data import PreparedData
from quantlens.experiments.stages.base import STAGES, RunContext, Stage

CALIBRATION_BATCH = 32


def _pipeline_images(data: PreparedData, indices: np.ndarray, count: int) -> EncodedImages:
    source = data.source
    chosen = indices[:count] if len(indices) >= count else np.resize(indices, count)
    if source.root is not None:
        return EncodedImages.from_files([source.root / source.ids[i] for i in chosen])
    arrays = [source.images[i] for i in chosen]
    return EncodedImages.from_arrays(arrays, description=f"images of {source.name}")


def benchmark(ctx: RunContext) -> BenchmarkReport:
    """Benchmark the experiment's model on `spec.benchmark`; progress goes out as `quantlens.events`
    and the session's caveats are notes on the report."""
    spec, data, eval_idx, calib_idx, record = ctx.spec, ctx.data, ctx.eval_idx, ctx.calib_idx, ctx.record
    config = spec.benchmark
    pool = calib_idx if calib_idx is not None and len(calib_idx) else eval_idx
    wanted = config.calibration_batches * CALIBRATION_BATCH
    # np.resize repeats a small pool cyclically up to the wanted number of samples
    calibration = [x for x, _, _ in data.batches(np.resize(pool, wanted), CALIBRATION_BATCH)]
    validation = torch.cat([x for x, _, _ in data.batches(eval_idx[:config.agreement_samples], 256)])
    p = data.preprocessing
    session = BenchmarkSession(ctx.setup.model, config, input_shape=(p.channels, *p.size), calibration=calibration,
                               validation=validation, images=_pipeline_images(data, eval_idx, config.stage_batch_size),
                               preprocessing=p, out_dir=record.path("benchmark"), run_dir=record.dir,
                               model_name=spec.model.name)
    return session.run()


STAGES.add("benchmark", Stage(
    "benchmark",
    order=40,
    result_type=BenchmarkReport,
    file=f"benchmark/{REPORT_FILE}",
    enabled=lambda spec: spec.benchmark.enabled,
    run=benchmark,
    writes_itself=True,
))
