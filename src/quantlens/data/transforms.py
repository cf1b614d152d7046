"""The transform chain, written with torch ops: channels -> size -> (augmentation) -> normalisation.

The deterministic part (channel conversion and resize) is applied once to the whole dataset and
kept as uint8, (N, C, H, W); augmentation and normalisation run per batch on the fly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from quantlens import events
from quantlens.data.source import Normalization

# ITU-R 601-2 luma weights (what Pillow's convert("L") uses).
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
AUGMENTATIONS = ("flip", "crop")


@dataclass(frozen=True)
class Preprocessing:
    """What a model needs its input to look like: (channels, height, width) and statistics."""

    channels: int
    size: tuple[int, int]
    normalization: Normalization

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if len(self.normalization.mean) != self.channels:
            object.__setattr__(self, "normalization", self.normalization.for_channels(self.channels))


def _convert_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """x: (B, C_in, H, W) float in [0, 255] -> (B, channels, H, W); may be `x` itself or a view of it
    (gray -> RGB is a stride-0 expand), so what follows must not write into it."""
    if x.shape[1] == channels:
        return x
    if channels == 3:
        return x.expand(-1, 3, -1, -1)
    return (x * _LUMA).sum(dim=1, keepdim=True)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    # Out of place: x may alias the caller's data or be an expanded view, where in-place ops fail.
    return x.round().clamp(0, 255).to(torch.uint8)


def to_model_layout(images: np.ndarray | Sequence[np.ndarray], prep: Preprocessing,
                    chunk: int = 1024) -> torch.Tensor:
    """uint8 images -- (N, H, W, C), or a list of (H_i, W_i, C_i) -- as a (N, C, H, W) uint8 tensor
    at the model's channels and size."""
    n = len(images)
    out = torch.empty((n, prep.channels, *prep.size), dtype=torch.uint8)
    with events.task(f"preparing images at {prep.channels}x{prep.size[0]}x{prep.size[1]}", total=n,
                     unit="images") as progress:
        if isinstance(images, np.ndarray):
            for start in range(0, n, chunk):
                block = torch.from_numpy(images[start:start + chunk]).permute(0, 3, 1, 2).float()
                out[start:start + chunk] = _to_uint8(_resize(_convert_channels(block, prep.channels), prep.size))
                progress.advance(len(block))
        else:
            for i, image in enumerate(images):
                x = torch.from_numpy(image).permute(2, 0, 1)[None].float()  # (1, C, H, W)
                out[i] = _to_uint8(_resize(_convert_channels(x, prep.channels), prep.size))[0]
                progress.advance()
    return out


def normalize(x: torch.Tensor, normalization: Normalization) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 (B, C, H, W): scale to [0, 1], subtract mean, divide by std."""
    mean = torch.tensor(normalization.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(normalization.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x.float() / 255.0 - mean) / std


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation on uint8 batches: random horizontal flip, random crop after padding."""

    flip: bool = False
    crop_padding: int = 0

    @classmethod
    def from_names(cls, names: list[str] | tuple[str, ...], image_side: int) -> Augmentation:
        unknown = sorted(set(names) - set(AUGMENTATIONS))
        if unknown:
            raise ValueError(f"unknown augmentation {unknown}; known: {', '.join(AUGMENTATIONS)}")
        # Pad by 1/8 of the side (4 pixels at 32x32, the usual CIFAR recipe).
        return cls(flip="flip" in names, crop_padding=max(1, image_side // 8) if "crop" in names else 0)

    @property
    def active(self) -> bool:
        return self.flip or self.crop_padding > 0

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """x: (B, C, H, W) uint8 -> same shape, augmented per sample."""
        if self.crop_padding:
            p = self.crop_padding
            h, w = x.shape[-2:]
            padded = F.pad(x, (p, p, p, p))  # zero padding
            offsets = torch.randint(0, 2 * p + 1, (x.shape[0], 2), generator=generator)
            x = torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets.tolist())])
        if self.flip:
            flip = torch.rand(x.shape[0], generator=generator) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        return x
