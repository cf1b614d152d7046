"""Stage timing of an image-classification pipeline, request by request.

One iteration serves one request of `len(images)` encoded images, the way a deployed classifier
does:

    decode       encoded files or bytes -> uint8 (H, W, C) arrays     (quantlens.data.decode)
    transform    channels, resize, uint8, normalise -> float32 (B, C, H, W)   (quantlens.data.transforms)
    features     the model up to the input of its last nn.Linear       } or one "forward" stage
    head         that Linear and whatever follows it                   } when the model cannot split
    postprocess  softmax, top-1 class and its probability as Python values

`preprocess` (decode + transform), `forward` (features + head) and `total` are derived per sample,
so every one of them gets the full statistics (`quantlens.bench.stats.summarize`): mean, median,
p90/p95/p99, min, max, std, IQR and bootstrap CIs of the median and the mean. The stages are timed
inside the same loop as the total, so the sum of the stages falls short of the total only by the
timer's bookkeeping (well under a percent for stages of a millisecond).

How the forward pass is split is the runner's business: a runner that can time its feature
extractor and classifier head apart says so (`Runner.splits_forward`) and hands them out
(`Runner.forward_parts`; eager torch runners cut at the input of the last nn.Linear, see
`quantlens.backends.torch_split`). Compiled, quantized and non-torch runners time "forward" as a
whole, and the reason is recorded.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quantlens.backends.base import ForwardParts, ForwardSplitError, Runner
from quantlens.backends.torch_split import split_at_last_linear  # noqa: F401  (re-exported)
from quantlens.bench.plan import TimingPlan
from quantlens.bench.record import BenchmarkRecord
from quantlens.bench.stages import StageTimer, StageTimings, time_stages
from quantlens.bench.stats import Summary, summarize
from quantlens.data.decode import IMAGE_EXTENSIONS, decode_image
from quantlens.data.synthetic import smooth_random_images
from quantlens.data.transforms import Preprocessing, normalize, to_model_layout
from quantlens.errors import QuantlensError

BASE_STAGES = ("decode", "transform", "features", "head", "forward", "postprocess")
DERIVED_STAGES = {"preprocess": ("decode", "transform"), "forward": ("features", "head")}


# A model that cannot be split into feature extractor and classifier head (the message says why).
SplitError = ForwardSplitError
# The forward as two timed stages (the runner's own device, autocast and memory format).
ForwardSplit = ForwardParts


# ---- the images a request carries -------------------------------------------------------------

@dataclass(frozen=True)
class EncodedImages:
    """Encoded images, decoded again on every iteration: file paths or in-memory bytes."""

    items: tuple[Path | bytes, ...]
    description: str

    def __post_init__(self) -> None:
        if not self.items:
            raise QuantlensError("a pipeline request needs at least one image")

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def from_files(cls, paths: Sequence[str | Path]) -> EncodedImages:
        files = tuple(Path(p) for p in paths)
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise QuantlensError(f"image files not found: {', '.join(missing[:3])}")
        return cls(files, f"{len(files)} image files")

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray], *, image_format: str = "PNG",
                    description: str = "in-memory images", **save_options: Any) -> EncodedImages:
        """uint8 (H, W, C) arrays encoded in memory (PNG is lossless: the decoded pixels are the data's)."""
        from PIL import Image

        items = []
        for array in arrays:
            buffer = io.BytesIO()
            Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(buffer, format=image_format,
                                                                                     **save_options)
            items.append(buffer.getvalue())
        return cls(tuple(items), f"{len(items)} {description} ({image_format})")

    @classmethod
    def from_folder(cls, root: str | Path, count: int, *, seed: int = 0) -> EncodedImages:
        """`count` image files under `root` (any depth), a seeded random choice."""
        root = Path(root)
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if len(files) < count:
            raise QuantlensError(f"{root} holds {len(files)} image files; the pipeline request needs {count}")
        chosen = np.random.default_rng(seed).choice(len(files), size=count, replace=False)
        return cls(tuple(files[i] for i in sorted(chosen)), f"{count} image files from {root}")

    @classmethod
    def synthetic(cls, count: int, height: int, width: int, *, channels: int = 3, image_format: str = "JPEG",
                  quality: int = 90, seed: int = 0) -> EncodedImages:
        """`count` smooth random images (the `synthetic` dataset's, so they compress like photographs
        rather than like white noise), encoded in memory; decode cost depends on size and content."""
        arrays = smooth_random_images(count, height, width, channels, torch.Generator().manual_seed(seed))
        return cls.from_arrays(list(arrays), image_format=image_format, quality=quality,
                               description=f"synthetic {width}x{height} images")


def decode_item(item: Path | bytes) -> np.ndarray:
    """(H, W, C) uint8 of one encoded image (decode_image reads paths and file objects alike)."""
    return decode_image(io.BytesIO(item) if isinstance(item, bytes) else item)


# ---- asking the runner for its forward in two parts -------------------------------------------

def forward_split(runner: Runner, example_input: torch.Tensor) -> tuple[ForwardParts | None, str]:
    """(features + head, where the cut is) when the runner can time them apart, else (None, why not)."""
    if not runner.splits_forward:
        return None, f"forward not split: {runner.info.backend} runs its forward as one call"
    try:
        parts = runner.forward_parts(example_input[:2])
    except ForwardSplitError as error:
        return None, f"forward not split: {error}"
    return parts, parts.description


# ---- the pipeline ---------------------------------------------------------------------------

class ClassificationPipeline:
    """decode -> transform -> forward (or features + head) -> postprocess, for one request."""

    def __init__(self, images: EncodedImages, preprocessing: Preprocessing,
                 forward: Callable[[torch.Tensor], torch.Tensor], *, split: ForwardParts | None = None) -> None:
        self.images = images
        self.preprocessing = preprocessing
        self.forward = forward
        self.split = split

    def _transform(self, arrays: list[np.ndarray]) -> torch.Tensor:
        """list of (H_i, W_i, C_i) uint8 -> float32 (B, C, H, W) at the model's size, normalised."""
        return normalize(to_model_layout(arrays, self.preprocessing), self.preprocessing.normalization)

    def step(self, timer: StageTimer) -> tuple[list[int], list[float]]:
        """One request, each stage timed; returns (top-1 classes, their probabilities)."""
        with timer.stage("decode"):
            arrays = [decode_item(item) for item in self.images.items]
        with timer.stage("transform"):
            batch = self._transform(arrays)
        if self.split is not None:
            with timer.stage("features"):
                features = self.split.features(batch)
            with timer.stage("head"):
                logits = self.split.head(features)
        else:
            with timer.stage("forward"):
                logits = self.forward(batch)
        with timer.stage("postprocess"):
            probabilities = torch.softmax(logits.float(), dim=1)  # (B, classes)
            confidence, classes = probabilities.max(dim=1)
            result = (classes.tolist(), confidence.tolist())
        return result

    def __call__(self) -> tuple[list[int], list[float]]:
        """One untimed request."""
        return self.step(StageTimer())


@dataclass(frozen=True)
class PipelineTimings:
    """A timed pipeline: `measured` holds the total per request (seconds, one per timed sample)
    and, per measured stage, one duration per sample aligned with the total's; the derived groups,
    the statistics and the shares are computed from it, never stored."""

    backend: str
    measured: BenchmarkRecord  # named "<backend>/pipeline"; batch_size = images per request
    split_note: str

    @property
    def batch_size(self) -> int:
        return self.measured.batch_size

    @property
    def split(self) -> bool:
        return "features" in self.measured.stages

    def stage_names(self) -> tuple[str, ...]:
        """Measured stages in pipeline order, then the derived groups and the total."""
        measured = self.measured_stages()
        derived = [name for name, parts in DERIVED_STAGES.items()
                   if name not in measured and all(p in self.measured.stages for p in parts)]
        return (*measured, *derived, "total")

    def measured_stages(self) -> tuple[str, ...]:
        """The stages that partition an iteration (no derived groups, no total)."""
        return tuple(s for s in BASE_STAGES if s in self.measured.stages)

    def samples(self, stage: str) -> np.ndarray:
        """Seconds per request of `stage`, one value per timed sample: (samples,)."""
        if stage == "total":
            return self.measured.samples
        if stage in self.measured.stages:
            return np.asarray(self.measured.stages[stage])
        parts = DERIVED_STAGES.get(stage)
        if parts and all(p in self.measured.stages for p in parts):
            return np.sum([np.asarray(self.measured.stages[p]) for p in parts], axis=0)
        raise QuantlensError(f"no stage {stage!r} (stages: {', '.join(self.stage_names())})")

    def summaries(self) -> dict[str, Summary]:
        return {stage: summarize(self.samples(stage)) for stage in self.stage_names()}

    def mean_shares(self) -> dict[str, float]:
        """Each stage's mean over the mean total, for every name of `stage_names()`. Means, not
        medians: means add up (a group's share is the sum of its parts', and the measured stages'
        shares sum to `accounted_fraction`); medians of parts do not sum to the median of the whole."""
        total = float(np.mean(self.samples("total")))
        return {stage: float(np.mean(self.samples(stage))) / total if total > 0 else math.nan
                for stage in self.stage_names()}

    @property
    def accounted_fraction(self) -> float:
        """Sum of the measured stages' mean shares: the part of the mean total inside the stages."""
        shares = self.mean_shares()
        return sum(shares[stage] for stage in self.measured_stages())

    @property
    def unaccounted_fraction(self) -> float:
        """(mean total - sum of the mean stages) / mean total: the timer's own share."""
        return 1.0 - self.accounted_fraction

    def record(self, *, metadata: Mapping[str, Any] | None = None,
               environment: Mapping[str, Any] | None = None) -> BenchmarkRecord:
        """`measured`, with `metadata` / `environment` in place of its own where given."""
        changes = {key: value for key, value in (("metadata", metadata), ("environment", environment))
                   if value is not None}
        return replace(self.measured, **changes) if changes else self.measured

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: the record, then derived values for readers (ignored by `from_dict`)."""
        shares = self.mean_shares()
        return {"backend": self.backend, "split_note": self.split_note, "record": self.measured.to_dict(),
                "batch_size": self.batch_size, "split": self.split,
                "accounted_fraction": self.accounted_fraction, "unaccounted_fraction": self.unaccounted_fraction,
                "stages": {name: {**summary.to_dict(), "mean_share": shares[name]}
                           for name, summary in self.summaries().items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PipelineTimings:
        try:
            return cls(backend=data["backend"], measured=BenchmarkRecord.from_dict(data["record"]),
                       split_note=data["split_note"])
        except KeyError as missing:
            raise QuantlensError(f"pipeline timings are missing the field {missing}") from None


# What times the pipeline's step: (step, plan, synchronize=...) -> StageTimings.
StageTiming = Callable[..., StageTimings]


def time_pipeline(pipeline: ClassificationPipeline, plan: TimingPlan, *, backend: str,
                  synchronize: Callable[[], object] | None = None, split_note: str = "",
                  metadata: Mapping[str, Any] | None = None,
                  environment: Mapping[str, Any] | None = None,
                  stage_timing: StageTiming = time_stages) -> PipelineTimings:
    """Time `pipeline` with `plan` (warm-up included), stage by stage; `environment` defaults to
    `capture_environment()` taken now. `stage_timing` is called as
    `stage_timing(pipeline.step, plan, synchronize=synchronize)`; it defaults to `time_stages`
    (the real clock), and a test passes one that returns scripted timings."""
    timings = stage_timing(pipeline.step, plan, synchronize=synchronize)
    measured = BenchmarkRecord.from_timing(f"{backend}/pipeline", timings, batch_size=len(pipeline.images),
                                           item_unit="image", metadata=metadata, environment=environment)
    return PipelineTimings(backend=backend, measured=measured, split_note=split_note)
