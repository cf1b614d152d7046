"""Real images for the benchmarks: CIFAR-10 test JPEGs from ../shared, resized and normalised.

Imported by the benchmark scripts (run from the project root, `python benchmarks/<script>.py`,
so this folder is on the import path).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from quantlens.data.decode import decode_image
from quantlens.data.source import RGB_DEFAULT
from quantlens.data.transforms import Preprocessing, normalize, to_model_layout

SHARED = Path(os.environ.get("QUANTLENS_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
CIFAR = SHARED / "data" / "cifar10-test-jpeg"


def cifar_images(count: int, size: int, seed: int = 0) -> tuple[torch.Tensor, str]:
    """`count` CIFAR-10 test JPEGs, classes interleaved, normalised: (count, 3, size, size), and a
    note saying what they are; seeded noise (`seed`) when the shared data is absent."""
    if CIFAR.is_dir():
        folders = sorted(p for p in CIFAR.iterdir() if p.is_dir())
        per_class = -(-count // len(folders))
        files = [sorted(f.iterdir())[i] for i in range(per_class) for f in folders][:count]
        layout = to_model_layout([decode_image(f) for f in files], Preprocessing(3, (size, size), RGB_DEFAULT))
        return normalize(layout, RGB_DEFAULT), f"{count} CIFAR-10 test JPEGs resized to {size}x{size}"
    noise = torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(seed))
    return noise, f"{count} seeded random images (no shared data at {CIFAR})"
