"""Dataset loaders by kind: `digits`, `medmnist:<file.npz>`, `imagefolder:<root>`, `idx:<dir>`, `synthetic`.

A data spec is `kind` or `kind:argument`; the loader registered for `kind` turns the argument
into an `ImageSource`.
"""

from __future__ import annotations

from collections.abc import Callable

from quantlens.data.source import ImageSource, validate_source
from quantlens.errors import DataError
from quantlens.registry import Registry

DatasetLoader = Callable[[str | None], ImageSource]

DATASETS: Registry[DatasetLoader] = Registry("dataset")


def parse_spec(spec: str) -> tuple[str, str | None]:
    """'medmnist:path/x.npz' -> ('medmnist', 'path/x.npz'); 'digits' -> ('digits', None)."""
    if not spec or not spec.strip():
        raise DataError("empty data spec; expected e.g. 'digits' or 'imagefolder:<root>'")
    kind, sep, argument = spec.partition(":")
    return kind.strip(), (argument if sep else None)


def load_source(spec: str) -> ImageSource:
    """The loader's `ImageSource`, checked against the rules every dataset must meet."""
    kind, argument = parse_spec(spec)
    loader = DATASETS.get(kind)
    return validate_source(loader(argument))
