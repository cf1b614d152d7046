"""Zip archives (torch checkpoints, numpy .npz files) checked from their central directory alone.

Each zip entry declares its uncompressed size, and readers allocate that much before inflating:
torch's reader (miniz) allocates the declared size, inflates exactly that many bytes and fails on
fewer, so the declared sizes bound what reading costs. DEFLATE reaches about 1000:1, so a 2 MB
file can declare 2 GB; these checks read only the directory and inflate nothing.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import psutil

from quantlens.errors import QuantlensError

# Loaded tensors and the model they are copied into must both fit in memory, hence half of it.
MEMORY_FRACTION = 0.5
# Far above any image classifier (ViT-g/14 in float32 is ~4 GB), even on a machine with 1 TB free.
BUDGET_CAP = 32 << 30
# Float weights deflate about 1.1:1 and integer arrays ~10:1, while zeros reach ~1000:1. Over 100:1 in
# an entry larger than 64 MiB is a bomb, not data; small entries (an all-zero bias) may be anything.
MAX_RATIO = 100
RATIO_MIN_BYTES = 64 << 20
ZIP_MAGIC = b"PK\x03\x04"


def starts_like_zip(path: str | os.PathLike[str]) -> bool:
    """The file begins with a zip local header: how torch.load tells its zip format from a legacy pickle."""
    with open(path, "rb") as f:
        return f.read(len(ZIP_MAGIC)) == ZIP_MAGIC


def format_bytes(n: float) -> str:
    """'512 B', '1.1 MB', '2.0 GB' (decimal units, as file managers show them)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def default_budget() -> int:
    """Bytes an archive may declare in all: a fraction of the memory available now, capped."""
    return min(int(psutil.virtual_memory().available * MEMORY_FRACTION), BUDGET_CAP)


def check_archive_sizes(path: str | os.PathLike[str], *, what: str, error: type[QuantlensError] = QuantlensError,
                        limit_bytes: int | None = None) -> list[zipfile.ZipInfo]:
    """The archive's entries, after refusing it (raising `error`, one line starting '{what} {path}')
    when its declared sizes are implausible. Nothing is inflated.

    limit_bytes: the most all entries may declare uncompressed; default `default_budget()`."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise error(f"{what} {path} is not a readable zip archive ({exc})") from None
    # Entries that overlap (many names sharing one compressed block) declare more than the file holds.
    stored = sum(e.compress_size for e in entries)
    if stored > path.stat().st_size:
        raise error(f"{what} {path}: its zip entries claim {format_bytes(stored)} of data in a "
                    f"{format_bytes(path.stat().st_size)} file (overlapping entries); refused before reading")
    total = sum(e.file_size for e in entries)
    if limit_bytes is not None:
        limit, why = limit_bytes, "the given limit"
    else:
        limit = default_budget()
        why = "the cap" if limit == BUDGET_CAP else f"{MEMORY_FRACTION:.0%} of the memory available now"
    if total > limit:
        raise error(f"{what} {path}: its zip entries declare {format_bytes(total)} uncompressed, more than "
                    f"{format_bytes(limit)} ({why}); refused before reading")
    for e in entries:
        if e.file_size > RATIO_MIN_BYTES and e.file_size > MAX_RATIO * max(e.compress_size, 1):
            raise error(f"{what} {path}: zip entry {e.filename} inflates {format_bytes(e.compress_size)} to "
                        f"{format_bytes(e.file_size)} (over {MAX_RATIO}:1, a decompression bomb); "
                        f"refused before reading")
    return entries
