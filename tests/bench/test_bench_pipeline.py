"""Pipeline stage timing: decode -> transform -> features + head (or forward) -> postprocess."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from quantlens.backends import ForwardParts, ForwardSplitError, Runner, RunnerInfo, Target, get_backend
from quantlens.bench.pipeline import (
    ClassificationPipeline,
    EncodedImages,
    SplitError,
    decode_item,
    forward_split,
    split_at_last_linear,
    time_pipeline,
)
from quantlens.bench.plan import TimingPlan, WarmupPolicy
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
    stages = sum(timings.samples(s) for s in timings.measured_stages())
    assert np.all(stages <= total)  # each stage is inside the iteration it belongs to
    assert 0.0 <= timings.unaccounted_fraction < 0.1  # only the timer's bookkeeping is outside the stages
    np.testing.assert_allclose(timings.samples("preprocess"), timings.samples("decode") + timings.samples("transform"))
    summary = timings.summaries()["forward"]
    for statistic in ("mean", "median", "p90", "p95", "p99", "min", "max", "std", "iqr"):
        assert np.isfinite(getattr(summary, statistic))
    assert summary.median_ci[0] <= summary.median <= summary.median_ci[1]
    assert summary.mean_ci[0] <= summary.mean <= summary.mean_ci[1]
    record = timings.record(metadata={"backend": backend})
    assert set(record.stages) == {"decode", "transform", "features", "head", "postprocess"}
    assert record.batch_size == 4 and record.item_unit == "image"


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
