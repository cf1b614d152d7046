"""Dataset loaders by kind: `digits`, `medmnist:<file.npz>`, `imagefolder:<root>`, `idx:<dir>`, `synthetic`.

A data spec is `kind` or `kind:argument`; the loader registered for `kind` turns the argument
into an `ImageSource`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from quantlens.data.source import ImageSource, validate_source
from quantlens.errors import DataError, UnknownNameError
from quantlens.registry import Registry

DatasetLoader = Callable[[str | None], ImageSource]

DATASETS: Registry[DatasetLoader] = Registry("dataset")


def parse_spec(spec: str) -> tuple[str, str | None]:
    """'medmnist:path/x.npz' -> ('medmnist', 'path/x.npz'); 'digits' -> ('digits', None)."""
    if not spec or not spec.strip():
        raise DataError("empty data spec; expected e.g. 'digits' or 'imagefolder:<root>'")
    kind, sep, argument = spec.partition(":")
    return kind.strip(), (argument if sep else None)


def _written_as(path: Path) -> str | None:
    """The spec a bare path most likely meant: an npz is MedMNIST's, a folder of IDX files `idx:`, any other
    folder an image folder."""
    if path.is_file() and path.suffix.lower() == ".npz":
        return f"medmnist:{path}"
    if path.is_dir():
        idx = any(p.name.startswith(("train-images", "t10k-images")) for p in path.iterdir())
        return f"{'idx' if idx else 'imagefolder'}:{path}"
    return None


def loader_for(spec: str) -> tuple[DatasetLoader, str | None]:
    """(the loader registered for the spec's kind, its argument); an unknown kind is an UnknownNameError
    naming the known kinds, and for a spec that is a path, the spec it should be written as."""
    kind, argument = parse_spec(spec)
    if kind not in DATASETS:
        message = DATASETS.unknown_message(spec if argument is None else kind)
        meant = _written_as(Path(spec).expanduser())
        raise UnknownNameError(message + (f"; {spec} is a path: write it as {meant}" if meant else ""))
    return DATASETS.get(kind), argument


def load_source(spec: str) -> ImageSource:
    """The loader's `ImageSource`, checked against the rules every dataset must meet."""
    loader, argument = loader_for(spec)
    return validate_source(loader(argument))
