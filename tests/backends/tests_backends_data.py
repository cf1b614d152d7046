"""Real data for the backend tests: the pretrained ResNet-20 and CIFAR-10 JPEGs beside the project
(skipped with the reason when they are absent). Not a test module: imported by them."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from quantlens.data.decode import decode_image
from quantlens.models.build import build_model
from quantlens.models.checkpoints import load_weights

SHARED = Path(os.environ.get("QUANTLENS_SHARED", Path(__file__).resolve().parents[2].parent / "shared"))
CIFAR = SHARED / "data" / "cifar10-test-jpeg"
RESNET20 = SHARED / "models" / "resnet20-cifar10" / "resnet20-12fca82f.th"
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: this test needs the shared data beside the project (../shared)")
    return path


@functools.lru_cache(maxsize=4)
def _cifar(per_class: int) -> torch.Tensor:
    files = [f for folder in sorted(_require(CIFAR).iterdir()) for f in sorted(folder.iterdir())[:per_class]]
    # Interleave the classes: image i belongs to class i % 10, so any prefix covers all classes.
    files = [files[c * per_class + i] for i in range(per_class) for c in range(10)]
    pixels = torch.from_numpy(np.stack([decode_image(f) for f in files])).permute(0, 3, 1, 2).float() / 255.0
    return ((pixels - MEAN) / STD).contiguous()  # (10 * per_class, 3, 32, 32)


def cifar_images(per_class: int) -> torch.Tensor:
    return _cifar(per_class).clone()


def pretrained_resnet20() -> torch.nn.Module:
    model = build_model("resnet20_cifar", num_classes=10, in_channels=3, image_size=32)
    return load_weights(model, _require(RESNET20)).eval()
