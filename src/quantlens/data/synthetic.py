"""Synthetic images for speed measurements: `synthetic:classes=1000,channels=3,size=224,count=256`.

Seeded, smooth random images (low-frequency noise, so they compress and decode like photographs
rather than like white noise) with random labels. Accuracy on them means nothing; latency and
throughput do not depend on what the pixels show.
"""

from __future__ import annotations

import numpy as np
import psutil
import torch
import torch.nn.functional as F

from quantlens.data.registry import DATASETS
from quantlens.data.source import ImageSource, default_normalization
from quantlens.errors import DataError

_DEFAULTS = {"classes": 1000, "channels": 3, "size": 224, "count": 256, "seed": 0}
# Upper bounds, each far beyond a speed measurement's needs; beyond them a typo, not a request.
_LIMITS = {"classes": 1_000_000, "size": 4096, "count": 1_000_000, "seed": 2**63 - 1}
# Generation holds each image as float32 noise upsampled, then as uint8: 5 bytes a pixel value.
_BYTES_PER_VALUE = 5
_MEMORY_SHARE = 0.5


def parse_options(argument: str | None) -> dict[str, int]:
    options = dict(_DEFAULTS)
    for part in (argument or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in _DEFAULTS:
            raise DataError(f"synthetic: {part.strip()!r} is not one of {', '.join(f'{k}=<int>' for k in _DEFAULTS)}")
        try:
            options[key] = int(value)
        except ValueError:
            raise DataError(f"synthetic: {key} must be an integer, got {value.strip()!r}") from None
    if options["channels"] not in (1, 3):
        raise DataError(f"synthetic: channels must be 1 or 3, got {options['channels']}")
    for key in ("classes", "size", "count"):
        if options[key] < 1:
            raise DataError(f"synthetic: {key} must be >= 1, got {options[key]}")
    for key, limit in _LIMITS.items():
        if not 0 <= options[key] <= limit:
            raise DataError(f"synthetic: {key} must be in 0..{limit}, got {options[key]}")
    needed = options["count"] * options["channels"] * options["size"] ** 2 * _BYTES_PER_VALUE
    available = psutil.virtual_memory().available
    if needed > _MEMORY_SHARE * available:
        raise DataError(f"synthetic: {options['count']} images of {options['channels']}x{options['size']}x"
                        f"{options['size']} need {needed / 2**30:.1f} GiB to generate, more than half of the "
                        f"{available / 2**30:.1f} GiB available; lower count or size")
    return options


def smooth_random_images(count: int, height: int, width: int, channels: int,
                         generator: torch.Generator) -> np.ndarray:
    """(count, height, width, channels) uint8: noise at 1/8 resolution, upsampled bicubically."""
    coarse = (max(2, height // 8), max(2, width // 8))
    noise = torch.rand((count, channels, *coarse), generator=generator) * 255
    images = F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False).clamp_(0, 255)
    return images.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@DATASETS.register("synthetic")
def load_synthetic(argument: str | None) -> ImageSource:
    o = parse_options(argument)
    generator = torch.Generator().manual_seed(o["seed"])
    images = smooth_random_images(o["count"], o["size"], o["size"], o["channels"], generator)
    labels = torch.randint(0, o["classes"], (o["count"],), generator=generator).numpy().astype(np.int64)
    spec = "synthetic:" + ",".join(f"{k}={v}" for k, v in o.items())
    return ImageSource(name="synthetic", spec=spec, images=images, labels=labels,
                       ids=[f"synthetic/{i}" for i in range(o["count"])],
                       class_names=[str(c) for c in range(o["classes"])], channels=o["channels"],
                       normalization=default_normalization(o["channels"]))
