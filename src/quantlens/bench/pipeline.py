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

How the forward pass is split: the model is traced with torch.fx; the last `nn.Linear` called is
taken as the classifier head, and the graph is cut at its input. Everything from that Linear on is
the head, everything before it the feature extractor. The cut is refused (and the forward stays one
stage, with the reason recorded) when the model cannot be traced (data-dependent control flow),
has no nn.Linear (a 1x1-conv classifier), uses the functional `F.linear` for its head, or when
the ops after the head read any tensor of the trunk other than the head's input (e.g. a
skip connection into the logits). The two halves are checked: head(features(x)) must equal
model(x). Only eager torch runners split; compiled, quantized and non-torch runners time
"forward" as a whole.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from quantlens.backends.base import Runner
from quantlens.backends.torch_eager import TorchEagerRunner
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


class SplitError(QuantlensError):
    """A model cannot be split into feature extractor and classifier head (the message says why)."""


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


# ---- splitting a torch model into feature extractor and head ---------------------------------

def _last_linear(traced: fx.GraphModule) -> fx.Node:
    linears = [n for n in traced.graph.nodes
               if n.op == "call_module" and isinstance(traced.get_submodule(str(n.target)), nn.Linear)]
    if not linears:
        raise SplitError("the traced model calls no nn.Linear module")
    return linears[-1]


def split_at_last_linear(model: nn.Module, example_input: torch.Tensor) -> tuple[fx.GraphModule, fx.GraphModule, str]:
    """(features, head, description): features(x) is the input of the model's last nn.Linear,
    head(features(x)) == model(x). Raises SplitError with the reason when the model cannot split."""
    try:
        traced = fx.symbolic_trace(model)
    except fx.proxy.TraceError as error:
        raise SplitError(f"torch.fx cannot trace the model ({error})") from error
    linear = _last_linear(traced)
    feature_node = linear.args[0]
    if not isinstance(feature_node, fx.Node):
        raise SplitError("the last nn.Linear's input is not a traced tensor")
    nodes = list(traced.graph.nodes)
    head_nodes = nodes[nodes.index(linear):]  # the Linear, what follows it, and the output node
    head_set = set(head_nodes)
    for node in head_nodes:
        for source in node.all_input_nodes:
            if source not in head_set and source is not feature_node and source.op != "get_attr":
                raise SplitError(f"the ops after the last Linear also read {source.name!r} from the trunk")

    features_graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in nodes[:nodes.index(linear)]:
        env[node] = features_graph.node_copy(node, lambda n: env[n])
    features_graph.output(env[feature_node])
    features = fx.GraphModule(traced, features_graph)
    features.graph.eliminate_dead_code()
    features.recompile()

    head_graph = fx.Graph()
    head_env: dict[fx.Node, fx.Node] = {feature_node: head_graph.placeholder("features")}
    for node in head_nodes:
        for source in node.all_input_nodes:
            if source.op == "get_attr" and source not in head_env:
                head_env[source] = head_graph.node_copy(source, lambda n: head_env[n])
        head_env[node] = head_graph.node_copy(node, lambda n: head_env[n])
    head = fx.GraphModule(traced, head_graph)
    head.graph.eliminate_dead_code()
    head.recompile()

    with torch.no_grad():
        expected = model(example_input)
        got = head(features(example_input))
    if not torch.allclose(expected, got, rtol=1e-5, atol=1e-6):
        raise SplitError("head(features(x)) differs from model(x): the cut is not exact")
    layer = traced.get_submodule(str(linear.target))
    return features, head, f"cut at the input of {linear.target} ({layer.in_features} -> {layer.out_features})"


@dataclass(frozen=True)
class ForwardSplit:
    features: Callable[[torch.Tensor], torch.Tensor]
    head: Callable[[torch.Tensor], torch.Tensor]
    description: str


def forward_split(runner: Runner, example_input: torch.Tensor) -> tuple[ForwardSplit | None, str]:
    """The runner's forward as two stages, with the runner's own device, autocast and memory
    format; or (None, why not)."""
    if not isinstance(runner, TorchEagerRunner) or not runner.splittable:
        return None, f"forward not split: {runner.info.backend} does not run an eager torch module"
    try:
        features, head, description = split_at_last_linear(runner.module, example_input[:2].to(runner.device))
    except SplitError as error:
        return None, f"forward not split: {error}"
    return ForwardSplit(runner.derive(features).run_raw, runner.derive(head).run, description), description


# ---- the pipeline ---------------------------------------------------------------------------

class ClassificationPipeline:
    """decode -> transform -> forward (or features + head) -> postprocess, for one request."""

    def __init__(self, images: EncodedImages, preprocessing: Preprocessing,
                 forward: Callable[[torch.Tensor], torch.Tensor], *, split: ForwardSplit | None = None) -> None:
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
    """Per-stage samples of a timed pipeline, the derived groups, and their statistics."""

    backend: str
    timings: StageTimings
    batch_size: int  # images per request
    split_note: str

    @property
    def split(self) -> bool:
        return "features" in self.timings.stages

    def stage_names(self) -> tuple[str, ...]:
        """Measured stages in pipeline order, then the derived groups and the total."""
        measured = [s for s in BASE_STAGES if s in self.timings.stages]
        derived = [name for name, parts in DERIVED_STAGES.items()
                   if name not in measured and all(p in self.timings.stages for p in parts)]
        return (*measured, *derived, "total")

    def measured_stages(self) -> tuple[str, ...]:
        """The stages that partition an iteration (no derived groups, no total)."""
        return tuple(s for s in BASE_STAGES if s in self.timings.stages)

    def samples(self, stage: str) -> np.ndarray:
        """Seconds per request of `stage`, one value per timed sample."""
        if stage == "total":
            return np.asarray(self.timings.total.samples_s)
        if stage in self.timings.stages:
            return np.asarray(self.timings.stages[stage])
        parts = DERIVED_STAGES.get(stage)
        if parts and all(p in self.timings.stages for p in parts):
            return np.sum([np.asarray(self.timings.stages[p]) for p in parts], axis=0)
        raise QuantlensError(f"no stage {stage!r} (stages: {', '.join(self.stage_names())})")

    def summaries(self) -> dict[str, Summary]:
        return {stage: summarize(self.samples(stage)) for stage in self.stage_names()}

    @property
    def unaccounted_fraction(self) -> float:
        """(mean total - sum of the mean stages) / mean total: the timer's own share."""
        total = float(np.mean(self.samples("total")))
        stages = sum(float(np.mean(self.samples(s))) for s in self.measured_stages())
        return (total - stages) / total if total > 0 else math.nan

    def record(self, *, metadata: dict[str, Any] | None = None,
               environment: dict[str, Any] | None = None) -> BenchmarkRecord:
        return BenchmarkRecord.from_timing(f"{self.backend}/pipeline", self.timings, batch_size=self.batch_size,
                                           item_unit="image", metadata=metadata, environment=environment)

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "batch_size": self.batch_size, "split": self.split,
                "split_note": self.split_note, "unaccounted_fraction": self.unaccounted_fraction,
                "stages": {name: summary.to_dict() for name, summary in self.summaries().items()}}


def time_pipeline(pipeline: ClassificationPipeline, plan: TimingPlan, *, backend: str,
                  synchronize: Callable[[], object] | None = None, split_note: str = "") -> PipelineTimings:
    """Time `pipeline` with `plan` (warm-up included), stage by stage."""
    timings = time_stages(pipeline.step, plan, synchronize=synchronize)
    return PipelineTimings(backend=backend, timings=timings, batch_size=len(pipeline.images), split_note=split_note)
