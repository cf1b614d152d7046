"""Images decoded from their files when they are read: an image folder too large to hold decoded.

`LazyImages` is a sequence of (H_i, W_i, C) uint8 arrays like the list an eager loader builds: indexing
an int decodes that file; indexing an array of indices gives the lazy subset; iterating decodes in a few
threads, in order (Pillow releases the GIL). Every file's shape is known beforehand from its header, so
the dataset's size and colour mode are decided without decoding. A file whose header reads but whose
pixels do not decode is found only when it is read: a DataError naming it then, since the samples are
already chosen (an eager load would have skipped it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from quantlens.data.decode import DecodeError, decode_image, oversize_warnings_as_errors
from quantlens.errors import DataError

DECODE_THREADS = 4
DECODE_AHEAD = 64  # images decoded per chunk while iterating


class LazyImages(Sequence):
    """`paths[i]` decoded on access to `shapes[i]` (H, W, C): grayscale files replicated to RGB when
    `channels` is 3."""

    def __init__(self, paths: Sequence[Path], shapes: Sequence[tuple[int, int, int]], channels: int) -> None:
        if len(paths) != len(shapes):
            raise ValueError(f"{len(paths)} paths but {len(shapes)} shapes")
        self.paths = list(paths)
        self.channels = channels
        self.shapes = [(h, w, channels) for h, w, _ in shapes]

    def __len__(self) -> int:
        return len(self.paths)

    def _decode(self, path: Path) -> np.ndarray:
        try:
            image = decode_image(path)
        except DecodeError as exc:
            raise DataError(f"imagefolder: {path} could not be decoded ({exc}); its header read when the folder "
                            f"was listed: remove or replace the file") from None
        return np.repeat(image, 3, axis=2) if self.channels == 3 and image.shape[2] == 1 else image

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            with oversize_warnings_as_errors():
                return self._decode(self.paths[index])
        chosen = np.arange(len(self))[index]  # a slice, a boolean mask or an array of indices
        return LazyImages([self.paths[i] for i in chosen], [self.shapes[i] for i in chosen], self.channels)

    def __iter__(self) -> Iterator[np.ndarray]:
        # The warnings filter is process-wide: set in this thread around the whole pool. Files are decoded
        # a chunk at a time, so at most DECODE_AHEAD decoded images wait for the reader (pool.map alone would
        # decode the whole folder ahead of a slow reader).
        with oversize_warnings_as_errors(), ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
            for start in range(0, len(self.paths), DECODE_AHEAD):
                yield from pool.map(self._decode, self.paths[start:start + DECODE_AHEAD])

    def __repr__(self) -> str:
        return f"LazyImages({len(self)} files, {self.channels} channels)"
