"""The transform chain, written with torch ops: channels -> size -> (augmentation) -> normalisation.

The deterministic part (channel conversion, resize and crop) is applied once to the whole dataset
and kept as uint8, (N, C, H, W); augmentation and normalisation run per batch on the fly.
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
RESIZE_MODES = ("squash", "shorter_side")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class ResizeRule:
    """How an image of any size becomes the model's (H, W) (`Preprocessing.size`).

    squash: each side scaled to `scale` (h, w), the aspect ratio not kept, then the centre (H, W) taken
    (timm's crop_mode 'squash'); `scale` None is (H, W) itself: no crop (quantlens's default).
    shorter_side: the shorter side scaled to s (`scale` is (s, s)) and the longer to int(s * long / short),
    the aspect ratio kept (torchvision's Resize(s)), then the centre (H, W) taken (torchvision's
    classification presets, timm's crop_mode 'center').
    The centre crop starts at round((in - out) / 2) on each axis (Python's round, half to even), as
    torchvision's CenterCrop. Resizing is
    F.interpolate on float pixels (align_corners=False), antialiased when shrinking with `antialias`
    (bilinear and bicubic; nearest has no antialiasing), as torchvision resizes tensors.
    """

    mode: str = "squash"
    scale: tuple[int, int] | None = None
    interpolation: str = "bilinear"
    antialias: bool = True

    def __post_init__(self) -> None:
        if self.mode not in RESIZE_MODES:
            raise ValueError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, got {self.mode!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {self.interpolation!r}")
        if self.scale is not None:
            object.__setattr__(self, "scale", (int(self.scale[0]), int(self.scale[1])))
            if min(self.scale) < 1:
                raise ValueError(f"resize scale must be positive, got {self.scale}")
        if self.mode == "shorter_side" and (self.scale is None or self.scale[0] != self.scale[1]):
            raise ValueError(f"shorter_side resizing needs one length, given as (s, s), got {self.scale}")

    def resized_shape(self, height: int, width: int, size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) an image of `height` x `width` is resized to, before the centre crop to `size`."""
        if self.mode == "squash":
            return self.scale or tuple(size)
        s = self.scale[0]
        if width <= height:  # torchvision: the longer side truncated, not rounded
            return int(s * height / width), s
        return s, int(s * width / height)

    def describe(self, size: tuple[int, int]) -> str:
        how = self.interpolation + (", antialiased" if self.antialias and self.interpolation != "nearest" else "")
        if self.mode == "squash":
            scale = self.scale or tuple(size)
            crop = "" if scale == tuple(size) else f", centre crop {size[0]}x{size[1]}"
            return f"squash to {scale[0]}x{scale[1]} ({how}){crop}"
        return f"shorter side to {self.scale[0]} ({how}), centre crop {size[0]}x{size[1]}"


@dataclass(frozen=True)
class Preprocessing:
    """What a model needs its input to look like: (channels, height, width), how an image reaches that
    size, and statistics."""

    channels: int
    size: tuple[int, int]
    normalization: Normalization
    resize: ResizeRule = ResizeRule()

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if len(self.normalization.mean) != self.channels:
            object.__setattr__(self, "normalization", self.normalization.for_channels(self.channels))
        r = self.resize
        # a crop larger than the resized image would need padding, which neither rule does
        if r.scale is not None and (r.scale[0] < self.size[0] or r.scale[1] < self.size[1]):
            raise ValueError(f"resize scale {r.scale} is smaller than the crop {tuple(self.size)}")


def _convert_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """x: (B, C_in, H, W) float in [0, 255] -> (B, channels, H, W); may be `x` itself or a view of it
    (gray -> RGB is a stride-0 expand), so what follows must not write into it."""
    if x.shape[1] == channels:
        return x
    if channels == 3:
        return x.expand(-1, 3, -1, -1)
    return (x * _LUMA).sum(dim=1, keepdim=True)


def _resize(x: torch.Tensor, size: tuple[int, int], rule: ResizeRule) -> torch.Tensor:
    """x: (B, C, H_in, W_in) float -> (B, C, *size): resized by `rule`, then centre-cropped to `size`."""
    target = tuple(rule.resized_shape(x.shape[-2], x.shape[-1], size))
    if tuple(x.shape[-2:]) != target:
        if rule.interpolation == "nearest":
            x = F.interpolate(x, size=target, mode="nearest")
        else:
            x = F.interpolate(x, size=target, mode=rule.interpolation, align_corners=False, antialias=rule.antialias)
    top, left = int(round((target[0] - size[0]) / 2.0)), int(round((target[1] - size[1]) / 2.0))
    return x[..., top:top + size[0], left:left + size[1]]


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    # Out of place: x may alias the caller's data or be an expanded view, where in-place ops fail.
    return x.round().clamp(0, 255).to(torch.uint8)


def to_model_layout(images: np.ndarray | Sequence[np.ndarray], prep: Preprocessing,
                    chunk: int = 1024) -> torch.Tensor:
    """uint8 images -- (N, H, W, C), or a list of (H_i, W_i, C_i) -- as a (N, C, H, W) uint8 tensor
    at the model's channels and size (resized and cropped by `prep.resize`)."""
    n = len(images)
    out = torch.empty((n, prep.channels, *prep.size), dtype=torch.uint8)
    with events.task(f"preparing images at {prep.channels}x{prep.size[0]}x{prep.size[1]}", total=n,
                     unit="images") as progress:
        if isinstance(images, np.ndarray):
            for start in range(0, n, chunk):
                block = torch.from_numpy(images[start:start + chunk]).permute(0, 3, 1, 2).float()
                resized = _resize(_convert_channels(block, prep.channels), prep.size, prep.resize)
                out[start:start + chunk] = _to_uint8(resized)
                progress.advance(len(block))
        else:
            for i, image in enumerate(images):
                x = torch.from_numpy(image).permute(2, 0, 1)[None].float()  # (1, C, H, W)
                out[i] = _to_uint8(_resize(_convert_channels(x, prep.channels), prep.size, prep.resize))[0]
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
