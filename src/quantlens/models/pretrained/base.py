"""What a pretrained model brings besides its architecture: the cached checkpoint, the classes its head
was trained for, and the input it was trained and evaluated with."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from quantlens.errors import ModelError

RESIZES = ("shorter_side", "squash")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class ModelPreprocessing:
    """The input a pretrained model expects, as its package states it: each image resized to `scale`
    (shorter_side: the shorter side to scale[0], the aspect ratio kept; squash: both sides), then its
    centre `size` (H, W) taken, then normalised with `mean`/`std` (on [0, 1] pixels)."""

    size: tuple[int, int]
    resize: str
    scale: tuple[int, int]
    crop_fraction: float  # size / scale (timm's crop_pct): how the resize follows another input size
    interpolation: str
    antialias: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    origin: str  # where these come from, for the run record

    def __post_init__(self) -> None:
        if self.resize not in RESIZES:
            raise ModelError(f"{self.origin}: resize {self.resize!r} is not one of {', '.join(RESIZES)}")
        if self.interpolation not in INTERPOLATIONS:
            raise ModelError(f"{self.origin}: interpolation {self.interpolation!r} is not implemented here (quantlens "
                             f"resizes with {', '.join(INTERPOLATIONS)})")
        if self.scale[0] < self.size[0] or self.scale[1] < self.size[1]:
            raise ModelError(f"{self.origin}: the crop {self.size} is larger than the resized image {self.scale} "
                             f"(crop fraction {self.crop_fraction:g} > 1 pads the image, which quantlens does not do)")

    def scale_at(self, size: tuple[int, int]) -> tuple[int, int]:
        """The resize target when the model takes `size` (data.image_size may differ from the model's own):
        the package's own at its size, else each side / crop_fraction rounded down (timm's rule)."""
        size = tuple(size)
        if size == self.size:
            return self.scale
        h, w = (math.floor(side / self.crop_fraction) for side in size)
        return (h, w) if self.resize == "squash" else (max(h, w), max(h, w))

    def describe(self) -> dict:
        return {"size": list(self.size), "resize": self.resize, "scale": list(self.scale),
                "crop_fraction": self.crop_fraction, "interpolation": self.interpolation,
                "antialias": self.antialias, "mean": list(self.mean), "std": list(self.std), "origin": self.origin}


@dataclass(frozen=True)
class PretrainedWeights(ABC):
    """A package's pretrained weights for one architecture, found in its local cache (never downloaded)."""

    reference: str  # as the user wrote it: 'timm:resnet18', 'torchvision:resnet18@IMAGENET1K_V1'
    label: str  # the weights' own name: 'timm resnet18.a1_in1k', 'torchvision ResNet18_Weights.IMAGENET1K_V1'
    path: Path  # the cached checkpoint
    num_classes: int  # classes of the head the weights come with
    preprocessing: ModelPreprocessing

    @abstractmethod
    def build(self, *, num_classes: int, in_channels: int, options: dict) -> tuple[nn.Module, list[str]]:
        """The model with these weights loaded (read with weights_only=True or from safetensors), and the
        names of the tensors left at their initial values because `num_classes` differs from the
        weights' (the new head); empty when nothing was replaced."""

    @property
    def origin(self) -> str:
        return f"{self.path} ({self.label} pretrained weights)"


def missing_weights(reference: str, looked_for: str, fetch: str) -> ModelError:
    """The one-line error for weights that are not in the local cache: where they were looked for and how
    to fetch them (quantlens never downloads)."""
    return ModelError(f"{reference} pretrained weights are not cached here (looked for {looked_for}); quantlens does "
                      f"not download: fetch them once on a machine with network: {fetch}")
