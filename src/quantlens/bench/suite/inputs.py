"""What a benchmark session is given, checked; the images it times; where its paths start from."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from quantlens.errors import QuantlensError
from quantlens.recipes.benchmark import BenchmarkConfig


def check_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """(C, H, W) as positive integers, or a QuantlensError."""
    shape = tuple(input_shape)
    if len(shape) != 3 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise QuantlensError(f"input_shape must be (C, H, W) positive integers, got {tuple(input_shape)}")
    return shape  # type: ignore[return-value]


def check_inputs(calibration: Sequence[torch.Tensor], validation: torch.Tensor | None,
                 input_shape: tuple[int, int, int],
                 config: BenchmarkConfig) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(calibration batches for static INT8, images for the agreement check and the timing):
    the first `config.calibration_batches` float32 (B, C, H, W) batches on the CPU, and
    (n, C, H, W) with n <= `config.agreement_samples` (from `validation`, else the calibration)."""
    batches = [b.detach().float().cpu() for b in list(calibration)[:config.calibration_batches]]
    if not batches:
        raise QuantlensError("a benchmark needs at least one calibration batch")
    for batch in [*batches, *([] if validation is None else [validation])]:
        if batch.dim() != 4 or tuple(batch.shape[1:]) != tuple(input_shape):
            raise QuantlensError(f"calibration and validation batches must be (B, {', '.join(map(str, input_shape))}), "
                                 f"got {tuple(batch.shape)}")
    images = torch.cat(batches) if validation is None else validation.detach().float().cpu()
    return batches, images[:config.agreement_samples].contiguous()


def cycled(images: torch.Tensor, size: int) -> torch.Tensor:
    """`size` images, repeating `images` (N, C, H, W) as often as needed: (size, C, H, W)."""
    repeats = math.ceil(size / images.shape[0])
    return torch.cat([images] * repeats)[:size].contiguous()


class RunPaths:
    """Turns the paths a benchmark writes into JSON into paths relative to the run folder.

    `run_dir` must hold `out_dir` (default: out_dir's parent, the run folder when out_dir is
    `<run>/benchmark`). Text that embeds an absolute path under the run folder (a backend's
    reason or note) gets the same treatment, so no JSON names the `.partial` folder.
    """

    def __init__(self, out_dir: Path, run_dir: Path | None) -> None:
        self.out_dir = Path(out_dir)
        self.run_dir = Path(run_dir) if run_dir is not None else self.out_dir.parent
        folder = Path(os.path.relpath(self.out_dir.absolute(), self.run_dir.absolute()))
        if folder.parts[:1] == ("..",):
            raise QuantlensError(f"the benchmark folder {self.out_dir} is not inside the run folder {self.run_dir}")
        self.folder = folder.as_posix()
        # Every spelling of the run folder, longest first: as given, absolute, with symlinks resolved.
        spellings = {str(self.run_dir), str(self.run_dir.absolute()), str(self.run_dir.resolve())} - {"."}
        self._prefixes = sorted(spellings, key=len, reverse=True)

    def relative(self, path: str | os.PathLike[str]) -> str:
        """`path` relative to the run folder, with forward slashes."""
        return Path(os.path.relpath(Path(path).absolute(), self.run_dir.absolute())).as_posix()

    def scrub(self, text: str) -> str:
        """`text` with absolute paths under the run folder made relative to it."""
        for prefix in self._prefixes:
            text = text.replace(prefix + os.sep, "").replace(prefix, ".")
        return text
