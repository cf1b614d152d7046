"""Pipeline stage timing: decode -> transform -> features + head (or forward) -> postprocess.

What is derived from the stage timings (groups, shares, the unaccounted fraction, statistics) is
tested on scripted timings passed through `time_pipeline(stage_timing=...)`; the runs on the real
clock assert only structure (stage names and order, each sample's stages inside its total,
finite statistics), which holds however loaded the machine is.
"""

from __future__ import annotations

import math
from types import MappingProxyType

import numpy as np
import pytest
import torch
from torch import nn

from quantlens.backends import ForwardParts, ForwardSplitError, Runner, RunnerInfo, Target, get_backend
from quantlens.bench.pipeline import (
    ClassificationPipeline,
    EncodedImages,
    PipelineTimings,
    SplitError,
    decode_item,
    forward_split,
    split_at_last_linear,
    time_pipeline,
)
from quantlens.bench.plan import TimingPlan, WarmupPolicy
from quantlens.bench.stages import StageTimer, StageTimings
from quantlens.bench.timing import TimingResult
from quantlens.data.source import RGB_DEFAULT
from quantlens.data.transforms import Preprocessing
from quantlens.models.build import build_model

PLAN = TimingPlan.iterations(12, warmup=WarmupPolicy.fixed(2))
PREP16 = Preprocessing(3, (16, 16), RGB_DEFAULT)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("resnet20_cifar", num_classes=10, in_channels=3, image_size=16).eval()


def test_split_at_last_linear_is_exact(model):
    x = torch.randn(3, 3, 16, 16)
    features, head, description = split_at_last_linear(model, x)
    with torch.no_grad():
        f = features(x)
        assert f.shape == (3, 64)  # the pooled, flattened trunk output
        torch.testing.assert_close(head(f), model(x), rtol=0, atol=0)
    assert "linear (64 -> 10)" in description


class ConvClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 10, 3)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))


class SkipIntoLogits(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        pooled = self.pool(x).flatten(1)
        return self.fc(pooled * 2) + pooled  # the head reads the trunk besides its input


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        pooled = x.mean(dim=(2, 3))
        return self.fc(pooled) if pooled.sum() > 0 else -self.fc(pooled)


@pytest.mark.parametrize(("module", "reason"), [
    (ConvClassifier(), "no nn.Linear"),
    (SkipIntoLogits(), "also read"),
    (DataDependent(), "cannot trace"),
])
def test_models_that_cannot_split_say_why(module, reason):
    with pytest.raises(SplitError, match=reason):
        split_at_last_linear(module.eval(), torch.randn(2, 3, 8, 8))


def test_synthetic_images_decode_to_the_requested_size():
    images = EncodedImages.synthetic(3, 20, 24, seed=1)
    assert all(isinstance(item, bytes) for item in images.items)
    assert decode_item(images.items[0]).shape == (20, 24, 3)
    assert EncodedImages.synthetic(3, 20, 24, seed=1).items == images.items  # seeded


@pytest.mark.parametrize("backend", ["torch-fp32", "torch-bf16"])
def test_stages_partition_the_total_and_are_summarised(model, backend, tmp_path):
    runner = get_backend(backend).prepare(model, torch.randn(2, 3, 16, 16), [], tmp_path, Target("cpu", 1))
    split, note = forward_split(runner, torch.randn(2, 3, 16, 16))
    assert split is not None, note
    pipeline = ClassificationPipeline(EncodedImages.synthetic(4, 24, 24), PREP16, runner.run, split=split)
    classes, confidences = pipeline()
    assert len(classes) == 4 and all(0.0 < c <= 1.0 for c in confidences)
    timings = time_pipeline(pipeline, PLAN, backend=backend, split_note=note)
    assert timings.stage_names() == ("decode", "transform", "features", "head", "postprocess",
                                     "preprocess", "forward", "total")
    total = timings.samples("total")
    assert total.shape == (12,) and np.all(total > 0)
    stages = sum(timings.samples(s) for s in timings.measured_stages())
    # Each stage's clock reads lie inside its iteration's, so this holds under any load; how much
    # lies outside the stages does not (an iteration preempted between two stages): that share
    # is tested on scripted timings below.
    assert np.all(stages <= total)
    assert 0.0 <= timings.unaccounted_fraction <= 1.0
    np.testing.assert_allclose(timings.samples("preprocess"), timings.samples("decode") + timings.samples("transform"))
    summary = timings.summaries()["forward"]
    for statistic in ("mean", "median", "p90", "p95", "p99", "min", "max", "std", "iqr"):
        assert np.isfinite(getattr(summary, statistic))
    assert summary.median_ci[0] <= summary.median_ci[1] and summary.mean_ci[0] <= summary.mean_ci[1]
    record = timings.record(metadata={"backend": backend})
    assert set(record.stages) == {"decode", "transform", "features", "head", "postprocess"}
    assert record.batch_size == 4 and record.item_unit == "image"


SCRIPTED_MS = {  # stage -> ms per request of 4 images, before the per-sample jitter
    "postprocess": 0.5, "head": 0.25, "decode": 2.0, "features": 4.0, "transform": 1.0,  # any order
}


def scripted_stage_timing(stages_s: dict[str, np.ndarray], outside_s: np.ndarray, seen: dict):
    """A `stage_timing` for `time_pipeline` that returns these per-sample stage durations, each
    sample's total being its stages plus `outside_s` (the time between the stage timers). It runs
    the pipeline's step once, untimed, and keeps what it was given in `seen`."""

    def stage_timing(step, plan, *, synchronize=None) -> StageTimings:
        timer = StageTimer()
        step(timer)
        seen.update(plan=plan, synchronize=synchronize, entered=timer.stage_names)
        totals = sum(stages_s.values()) + outside_s
        total = TimingResult(samples_s=tuple(totals.tolist()), warmup_samples_s=(1.0, 1.0),
                             steady_state_reached=False, plan=plan, started_at=1000.0, finished_at=1001.0)
        return StageTimings(total=total, stages=MappingProxyType({k: tuple(v.tolist()) for k, v in stages_s.items()}))

    return stage_timing


def scripted_stages(samples: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {stage: ms * 1e-3 * rng.lognormal(0.0, 0.05, samples) for stage, ms in SCRIPTED_MS.items()}


def test_pipeline_figures_from_scripted_stage_timings():
    images = EncodedImages.synthetic(4, 16, 16)
    pipeline = ClassificationPipeline(images, PREP16, nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10)))
    stages = scripted_stages(12, seed=0)
    outside = np.full(12, 20e-6)  # 20 us per request of timer bookkeeping
    seen: dict = {}

    def sync() -> None:
        return None

    timings = time_pipeline(pipeline, PLAN, backend="scripted", synchronize=sync, split_note="scripted split",
                            environment={"machine_fingerprint": "x"},
                            stage_timing=scripted_stage_timing(stages, outside, seen))
    # The stage timing got the pipeline's own step, the plan and synchronize.
    assert seen["plan"] is PLAN and seen["synchronize"] is sync
    assert seen["entered"] == ("decode", "transform", "forward", "postprocess")  # not split: one forward
    # Stages in pipeline order whatever order they were recorded in, then groups, then the total.
    assert timings.measured_stages() == ("decode", "transform", "features", "head", "postprocess")
    assert timings.stage_names() == ("decode", "transform", "features", "head", "postprocess",
                                     "preprocess", "forward", "total")
    assert timings.split and timings.batch_size == 4 and timings.split_note == "scripted split"
    record = timings.record()
    assert record.name == "scripted/pipeline" and record.item_unit == "image" and record.summary.count == 12
    np.testing.assert_array_equal(timings.samples("decode"), stages["decode"])
    np.testing.assert_array_equal(timings.samples("preprocess"), stages["decode"] + stages["transform"])
    np.testing.assert_array_equal(timings.samples("forward"), stages["features"] + stages["head"])
    total = sum(stages.values()) + outside
    np.testing.assert_allclose(timings.samples("total"), total, rtol=1e-15)
    # Shares are means over the mean total; the measured stages' shares sum to the accounted part.
    shares = timings.mean_shares()
    for stage in ("decode", "features", "postprocess"):
        assert shares[stage] == pytest.approx(stages[stage].mean() / total.mean(), rel=1e-12)
    assert shares["preprocess"] == pytest.approx(shares["decode"] + shares["transform"], rel=1e-12)
    assert shares["total"] == pytest.approx(1.0)
    assert timings.unaccounted_fraction == pytest.approx(20e-6 / total.mean(), rel=1e-6)
    # Statistics of seeded samples: the same figures on every run.
    summary = timings.summaries()["forward"]
    assert summary.count == 12 and summary.median == pytest.approx(np.median(stages["features"] + stages["head"]))
    assert summary.median_ci[0] <= summary.median <= summary.median_ci[1]
    assert summary.mean_ci[0] <= summary.mean <= summary.mean_ci[1]
    assert PipelineTimings.from_dict(timings.to_dict()) == timings


def test_a_preempted_iteration_shows_as_time_outside_the_stages():
    """The unaccounted share is a measurement, not a constant: an iteration preempted between two
    stage timers puts the stall outside every stage, and the figures say so honestly."""
    images = EncodedImages.synthetic(2, 16, 16)
    pipeline = ClassificationPipeline(images, PREP16, nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10)))
    stages = scripted_stages(10, seed=1)
    outside = np.full(10, 10e-6)
    outside[3] += 50e-3  # sample 3 lost 50 ms between two stages
    timings = time_pipeline(pipeline, PLAN, backend="scripted", environment={"machine_fingerprint": "x"},
                            stage_timing=scripted_stage_timing(stages, outside, {}))
    total = sum(stages.values()) + outside
    assert timings.unaccounted_fraction == pytest.approx(outside.mean() / total.mean(), rel=1e-6)
    assert timings.unaccounted_fraction > 0.3  # 5 ms of the mean 12.8 ms request
    assert np.all(sum(timings.samples(s) for s in timings.measured_stages()) <= timings.samples("total"))
    # The median of the total barely moves; the mean carries the stall.
    summary = timings.summaries()["total"]
    assert summary.median == pytest.approx(np.median(total)) and summary.median < 9e-3 < summary.mean
    assert math.isfinite(summary.median_ci_half_width_pct)


def test_non_torch_runners_time_forward_as_one_stage(model, tmp_path):
    runner = get_backend("ort-fp32").prepare(model, torch.randn(2, 3, 16, 16), [], tmp_path, Target("cpu", 1))
    split, note = forward_split(runner, torch.randn(2, 3, 16, 16))
    assert split is None and "not split" in note
    pipeline = ClassificationPipeline(EncodedImages.synthetic(2, 16, 16), PREP16, runner.run)
    timings = time_pipeline(pipeline, PLAN, backend="ort-fp32", split_note=note)
    assert timings.measured_stages() == ("decode", "transform", "forward", "postprocess")
    assert "features" not in timings.stage_names()


@pytest.mark.shared_data
def test_pipeline_decodes_real_jpeg_files(model, shared_path):
    images = EncodedImages.from_folder(shared_path("data/cifar10-test-jpeg"), 5, seed=0)
    assert len(images) == 5 and all(p.suffix == ".jpg" for p in images.items)
    with torch.no_grad():
        pipeline = ClassificationPipeline(images, PREP16, model)
        classes, _ = pipeline()
    assert len(classes) == 5 and all(0 <= c < 10 for c in classes)


class _SplittingRunner(Runner):
    """No torch runner class at all: it splits because it says it can (the capability, not a type)."""

    info = RunnerInfo("made-up", "fp32", "fp32", "cpu", "none", 1)

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def run(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)

    @property
    def splits_forward(self) -> bool:
        return True

    def forward_parts(self, example_input: torch.Tensor) -> ForwardParts:
        features, head, description = split_at_last_linear(self.model, example_input)
        return ForwardParts(features, head, f"made up: {description}")


def test_the_stage_timer_asks_the_runner_whether_it_splits(model, tmp_path):
    split, note = forward_split(_SplittingRunner(model), torch.randn(2, 3, 16, 16))
    assert split is not None and note.startswith("made up: cut at the input of")
    eager = get_backend("torch-fp32").prepare(model, torch.randn(2, 3, 16, 16), [], tmp_path, Target("cpu", 1))
    ort = get_backend("ort-fp32").prepare(model, torch.randn(2, 3, 16, 16), [], tmp_path, Target("cpu", 1))
    assert eager.splits_forward and not ort.splits_forward
    assert not eager.derive(model).splits_forward  # a derived half is not split again
    with pytest.raises(ForwardSplitError, match="runs its forward as one call"):
        ort.forward_parts(torch.randn(2, 3, 16, 16))
    parts = eager.forward_parts(torch.randn(2, 3, 16, 16))
    x = torch.randn(3, 3, 16, 16)
    torch.testing.assert_close(parts.head(parts.features(x)), eager.run(x))


def test_a_model_that_cannot_split_is_timed_as_one_forward_with_the_reason(tmp_path):
    class NoLinear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x).mean((2, 3))

    runner = get_backend("torch-fp32").prepare(NoLinear(), torch.randn(2, 3, 8, 8), [], tmp_path, Target("cpu", 1))
    split, note = forward_split(runner, torch.randn(2, 3, 8, 8))
    assert split is None and note == "forward not split: the traced model calls no nn.Linear module"
