"""scikit-learn's 8x8 handwritten digits (1,797 images): the data that ships with a dependency."""

from __future__ import annotations

import numpy as np

from quantlens.data.registry import DATASETS
from quantlens.data.source import GRAY_DEFAULT, ImageSource
from quantlens.errors import DataError


@DATASETS.register("digits")
def load_digits(argument: str | None) -> ImageSource:
    if argument:
        raise DataError(f"'digits' takes no argument (got 'digits:{argument}')")
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    # Pixel values are counts 0..16; stretch them to the 0..255 range of every other source.
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    return ImageSource(
        name="digits",
        spec="digits",
        images=images,
        labels=bunch.target.astype(np.int64),
        ids=[f"digits/{i}" for i in range(len(images))],
        class_names=[str(c) for c in range(10)],
        channels=1,
        normalization=GRAY_DEFAULT,
    )
