"""Decode one image file into a uint8 (H, W, C) array, C = 1 for grayscale, 3 for colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


class DecodeError(Exception):
    """A file that cannot be decoded as an image (the message says why)."""


def _to_uint8_gray(image: Image.Image) -> np.ndarray:
    if image.mode in ("1", "L", "LA"):
        return np.array(image.convert("L"), dtype=np.uint8)
    values = np.asarray(image, dtype=np.float64)  # 16-bit, 32-bit int or float pixels
    if image.mode.startswith("I;16"):
        return np.rint(values / 257.0).astype(np.uint8)  # 0..65535 -> 0..255
    lo, hi = float(values.min()), float(values.max())
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.rint((values - lo) * scale).astype(np.uint8)


def decode_image(path: Path) -> np.ndarray:
    """(H, W, 1) for grayscale files, (H, W, 3) for colour ones (alpha and palettes resolved)."""
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)  # camera photos: apply the stored orientation
            image.load()
            if image.mode in _GRAY_MODES:
                array = _to_uint8_gray(image)[..., None]
            else:
                array = np.array(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DecodeError(f"{type(exc).__name__}: {exc}") from None
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DecodeError("image has zero size")
    return array
