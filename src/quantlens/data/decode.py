"""Decode one image file into a uint8 (H, W, C) array, C = 1 for grayscale, 3 for colour; or read only
its header: the shape decoding it would give."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
# Pillow's guard against decompression bombs: a warning above Image.MAX_IMAGE_PIXELS, an error
# above twice that. Both mean "this file is refused", never a reason to stop the whole dataset.
_OVERSIZE = (Image.DecompressionBombWarning, Image.DecompressionBombError)


class DecodeError(Exception):
    """A file that cannot be decoded as an image (the message says why)."""


@contextmanager
def oversize_warnings_as_errors() -> Iterator[None]:
    """Within: Pillow's DecompressionBombWarning is raised, so `decode_image` refuses the file
    quietly instead of printing a warning. The warnings filter is process-wide (threads share it):
    enter this in the thread that starts the decoding threads, around all of them."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _to_uint8_gray(image: Image.Image) -> np.ndarray:
    if image.mode in ("1", "L", "LA"):
        return np.array(image.convert("L"), dtype=np.uint8)
    values = np.asarray(image, dtype=np.float64)  # 16-bit, 32-bit int or float pixels
    if image.mode.startswith("I;16"):
        return np.rint(values / 257.0).astype(np.uint8)  # 0..65535 -> 0..255
    lo, hi = float(values.min()), float(values.max())
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.rint((values - lo) * scale).astype(np.uint8)


def _check_pixel_limit(image: Image.Image) -> None:
    # The same test as Pillow's warning, so the outcome does not depend on the warnings filter.
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and image.width * image.height > limit:
        raise DecodeError(f"{image.width}x{image.height} pixels is over Pillow's limit of {limit} "
                          f"(PIL.Image.MAX_IMAGE_PIXELS)")


def decode_image(path: Path | BinaryIO) -> np.ndarray:
    """(H, W, 1) for grayscale files, (H, W, 3) for colour ones (alpha and palettes resolved)."""
    try:
        with Image.open(path) as image:
            _check_pixel_limit(image)
            image = ImageOps.exif_transpose(image)  # camera photos: apply the stored orientation
            image.load()
            if image.mode in _GRAY_MODES:
                array = _to_uint8_gray(image)[..., None]
            else:
                array = np.array(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, *_OVERSIZE) as exc:
        raise DecodeError(f"{type(exc).__name__}: {exc}") from None
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DecodeError("image has zero size")
    return array


# EXIF orientations that turn the image by 90 or 270 degrees: exif_transpose swaps its sides.
_SIDEWAYS = (5, 6, 7, 8)
_ORIENTATION_TAG = 0x0112


def read_header(path: Path) -> tuple[int, int, int]:
    """(H, W, C) that `decode_image(path)` returns, read from the file's header without decoding its
    pixels; DecodeError for a file that is not an image or is over Pillow's pixel limit. A file whose
    pixel data is damaged passes (only decoding finds that out)."""
    try:
        with Image.open(path) as image:
            _check_pixel_limit(image)
            width, height = image.size
            if image.getexif().get(_ORIENTATION_TAG, 1) in _SIDEWAYS:
                width, height = height, width
            channels = 1 if image.mode in _GRAY_MODES else 3
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, *_OVERSIZE) as exc:
        raise DecodeError(f"{type(exc).__name__}: {exc}") from None
    if width == 0 or height == 0:
        raise DecodeError("image has zero size")
    return height, width, channels
