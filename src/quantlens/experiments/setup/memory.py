"""Whether the prepared images fit in memory, checked before they are made."""

from __future__ import annotations

import psutil

from quantlens.data.source import ImageSource
from quantlens.data.transforms import Preprocessing
from quantlens.errors import ConfigError
from quantlens.experiments.spec import ExperimentSpec

# Share of the memory available now that the prepared images may take; the rest is for the model,
# activations and the decoded source itself.
MEMORY_SHARE = 0.5


def check_memory(spec: ExperimentSpec, source: ImageSource, preprocessing: Preprocessing,
                 samples: int | None = None) -> None:
    """ConfigError naming data.image_size when the `samples` images the run prepares (default: all of
    them) at model layout ((n, C, H, W) uint8) would not fit in memory, instead of an allocation failure
    or a swapping machine minutes later."""
    c, (h, w) = preprocessing.channels, preprocessing.size
    n = len(source) if samples is None else samples
    needed = n * c * h * w
    available = psutil.virtual_memory().available
    if needed > MEMORY_SHARE * available:
        gib = 2**30
        subset = ", or evaluate a subset (eval.max_samples, --limit)" if n == len(source) else ""
        raise ConfigError(f"data.image_size: {n} images at {c}x{h}x{w} would take {needed / gib:.1f} GiB, "
                          f"more than half of the {available / gib:.1f} GiB of memory available; choose a smaller "
                          f"image_size{subset}")
