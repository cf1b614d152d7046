"""Timing the classification pipeline stage by stage for the session's `stage_backends`.

Whether the forward is timed as features + head is the runner's to say (`Runner.splits_forward`,
asked through `quantlens.bench.pipeline.forward_split`); `split_forward: false` in the config
keeps it one stage for every backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from quantlens import events
from quantlens.backends import Target
from quantlens.bench.notes import BenchmarkNote
from quantlens.bench.pipeline import (
    ClassificationPipeline,
    EncodedImages,
    PipelineTimings,
    forward_split,
    time_pipeline,
)
from quantlens.bench.plan import TimingPlan
from quantlens.bench.suite.batches import warmup_policy
from quantlens.bench.suite.prepare import PreparedBackend
from quantlens.data.source import default_normalization
from quantlens.data.transforms import Preprocessing
from quantlens.recipes.benchmark import BenchmarkConfig


def time_pipelines(config: BenchmarkConfig, prepared: Mapping[str, PreparedBackend], images: torch.Tensor,
                   input_shape: tuple[int, int, int], encoded: EncodedImages | None,
                   preprocessing: Preprocessing | None, target: Target, model_name: str,
                   environment: Mapping[str, Any]) -> tuple[list[PipelineTimings], list[BenchmarkNote]]:
    """(timed pipelines, notes on the ones left out). images: (n, C, H, W), the example the
    forward is split on; encoded / preprocessing: what a request decodes and how it transforms it
    (default: synthetic JPEGs at the input size, the default normalisation for the channels)."""
    channels, height, width = input_shape
    encoded = encoded or EncodedImages.synthetic(config.stage_batch_size, height, width,
                                                 channels=channels, seed=config.seed)
    preprocessing = preprocessing or Preprocessing(channels, (height, width), default_normalization(channels))
    plan = TimingPlan.iterations(config.stage_iterations, warmup=warmup_policy(config))
    results: list[PipelineTimings] = []
    notes: list[BenchmarkNote] = []
    for name in config.stage_backend_names:
        entry = prepared.get(name)
        if entry is None:
            notes.append(BenchmarkNote("skipped", f"pipeline of {name} not timed: the backend is not ready", name))
            continue
        estimate = entry.seconds_per_image * len(encoded)
        if estimate > config.max_call_seconds:
            notes.append(BenchmarkNote("skipped", f"pipeline of {name} not timed: estimated {estimate:.1f} s "
                                                  f"per request exceeds max_call_seconds "
                                                  f"{config.max_call_seconds:g}", name))
            continue
        split, split_note = (forward_split(entry.runner, images[:2]) if config.split_forward
                             else (None, "forward not split: split_forward is off"))
        pipeline = ClassificationPipeline(encoded, preprocessing, entry.runner.run, split=split)
        events.note(f"  pipeline {name}: {encoded.description}, {config.stage_iterations} requests; {split_note}")
        results.append(time_pipeline(pipeline, plan, backend=name, split_note=split_note,
                                     synchronize=torch.cuda.synchronize if target.is_cuda else None,
                                     metadata={"backend": name, "model": model_name, "split_note": split_note},
                                     environment=environment))
    return results, notes
