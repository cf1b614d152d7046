"""PyTorch data as the Python API takes it: a Dataset, a DataLoader, a tensor of images, or any
iterable of batches -- each sample or batch `x`, `(x, y)`, `(x, y, ...)` or a dict with an image key.

    for batch in batches(loader, batch_size=32, what="calibration_data"):
        batch.x        # (B, ...) floating-point inputs, as the data gives them
        batch.y        # (B,) int64 class indices, or None when the data has no labels

A Dataset (or anything indexable with a length that is not a list or tuple: a numpy array of
images, a Hugging Face dataset in torch format) is batched here, in order, without workers, with
torch's default collation; a DataLoader keeps its own batches, order and workers; a tensor is split
along its first dimension; a list, tuple or other iterable holds batches. Anything else is refused
with one line naming what was found (a `DataError`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset
from torch.utils.data.dataloader import default_collate

from quantlens.errors import ConfigError, DataError

# Keys of a dict sample or batch, in the order they are looked for (torchvision-style, Hugging Face
# `pixel_values`, MONAI-style `image`/`label`).
IMAGE_KEYS = ("image", "img", "pixel_values", "x")
LABEL_KEYS = ("label", "labels", "target", "y")
EXPECTED = ("a tensor batch (B, C, H, W), a tuple (x, y) or a dict with an image key "
            f"({', '.join(repr(k) for k in IMAGE_KEYS)})")
# What the API's data arguments take (for readers and type checkers; checked at run time).
DataLike = Dataset | DataLoader | torch.Tensor | Iterable[Any]
ACCEPTED = ("a torch Dataset, a DataLoader, a tensor of images (N, C, H, W) or an iterable of batches "
            "(tensors, (x, y) tuples or dicts)")


@dataclass(frozen=True)
class Batch:
    """One batch: x (B, ...) floating-point inputs; y (B,) int64 class indices, or None."""

    x: torch.Tensor
    y: torch.Tensor | None

    def __len__(self) -> int:
        return len(self.x)


def _kind(value: Any) -> str:
    """How a value is named in an error: its type, with the dtype and shape of an array."""
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return type(value).__name__


def _tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray) and value.dtype != object:
        return torch.from_numpy(value)
    return None


def _collate(what: str):
    """torch's default collation, with the samples it cannot stack (PIL images, strings of
    different kinds) refused in one line instead of collate's multi-line TypeError."""

    def collate(samples: list[Any]) -> Any:
        try:
            return default_collate(samples)
        except (TypeError, RuntimeError) as exc:
            first = samples[0]
            inner = first[0] if isinstance(first, (tuple, list)) and first else first
            hint = " (a torchvision dataset needs transform=ToTensor())" if type(inner).__module__.startswith("PIL") \
                else ""
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"{what} yields samples of {_kind(inner)} that cannot be stacked into a batch "
                            f"({reason}); expected tensors or arrays of one shape{hint}") from None

    return collate


def _items(data: Any, batch_size: int, what: str) -> Iterable[Any]:
    """The raw batches of `data` (collated, not yet checked)."""
    if isinstance(data, torch.Tensor):
        if data.ndim < 2:
            raise DataError(f"{what} is {_kind(data)}; a tensor of inputs needs a batch dimension first, "
                            f"e.g. (N, C, H, W)")
        return data.split(batch_size)
    if isinstance(data, DataLoader):
        if data.batch_size is None and data.batch_sampler is None:
            raise DataError(f"{what} is a DataLoader with batch_size=None, which yields single samples; "
                            f"give it a batch_size")
        return data
    if isinstance(data, (str, bytes, Mapping)):
        raise DataError(f"{what} is {_kind(data)}; expected {ACCEPTED}")
    if isinstance(data, (Dataset, IterableDataset)) or _map_style(data):
        return DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=0, collate_fn=_collate(what))
    if not isinstance(data, Iterable):
        raise DataError(f"{what} is {_kind(data)}; expected {ACCEPTED}")
    return data


def _map_style(data: Any) -> bool:
    """A dataset by duck typing (samples by index, a length: a Hugging Face dataset in torch format,
    a numpy array of images), as opposed to a list or tuple, which holds batches."""
    return not isinstance(data, (list, tuple)) and hasattr(data, "__getitem__") and hasattr(data, "__len__")


def _labels(value: Any, n: int, what: str) -> torch.Tensor:
    y = _tensor(value)
    if y is None and isinstance(value, (list, tuple)) and all(isinstance(v, (int, np.integer)) for v in value):
        y = torch.as_tensor(value)
    if y is None:
        raise DataError(f"{what} yields labels of {_kind(value)}; expected class indices, a tensor of shape (B,)")
    if y.ndim == 2 and y.shape[1] == 1:  # (B, 1), as MedMNIST stores them
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{what} yields labels of {_kind(y)} for {n} inputs; expected class indices of shape "
                        f"({n},) (one-hot labels: take their argmax)")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise DataError(f"{what} yields labels of {_kind(y)}; expected integer class indices")
    if len(y) and int(y.min()) < 0:
        raise DataError(f"{what} yields the label {int(y.min())}; class indices are >= 0")
    return y.long()


def _batch(item: Any, what: str) -> Batch:
    x_value: Any = item
    y_value: Any = None
    if isinstance(item, Mapping):
        image_key = next((k for k in IMAGE_KEYS if k in item), None)
        if image_key is None:
            keys = ", ".join(repr(k) for k in list(item)[:8])
            raise DataError(f"{what} yields a dict with keys {keys}; expected the inputs under one of "
                            f"{', '.join(repr(k) for k in IMAGE_KEYS)}")
        label_key = next((k for k in LABEL_KEYS if k in item), None)
        x_value, y_value = item[image_key], None if label_key is None else item[label_key]
    elif isinstance(item, (tuple, list)):
        if not item:
            raise DataError(f"{what} yields an empty {type(item).__name__}; expected {EXPECTED}")
        x_value, y_value = item[0], item[1] if len(item) > 1 else None
    x = _tensor(x_value)
    if x is None:
        inside = "" if x_value is item else f"a {type(item).__name__} whose inputs are "
        raise DataError(f"{what} yields {inside}{_kind(x_value)}; expected {EXPECTED}")
    if x.ndim == 0:
        raise DataError(f"{what} yields {_kind(x)}; expected a batch of inputs, e.g. (B, C, H, W)")
    if not x.is_floating_point():
        raise DataError(f"{what} yields inputs of {_kind(x)}; the model takes floating-point tensors: convert "
                        f"(and normalise) the images first, e.g. x.float() / 255")
    return Batch(x, None if y_value is None else _labels(y_value, len(x), what))


def batches(data: Any, *, batch_size: int, what: str = "data") -> Iterator[Batch]:
    """The batches of `data` (see the module docstring), checked one by one as they come.
    `what` names the argument in errors; `batch_size` batches a Dataset or a tensor."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    for item in _items(data, batch_size, what):
        batch = _batch(item, what)
        if len(batch):
            yield batch


def first_samples(data: Any, count: int, *, batch_size: int, what: str = "data") -> list[Batch]:
    """The batches holding the first `count` samples of `data` (the last one cut to fit); fewer
    when the data holds fewer. Stops reading the data there (a DataLoader is not run to its end)."""
    taken: list[Batch] = []
    seen = 0
    for batch in batches(data, batch_size=batch_size, what=what):
        keep = min(len(batch), count - seen)
        taken.append(batch if keep == len(batch) else
                     Batch(batch.x[:keep], None if batch.y is None else batch.y[:keep]))
        seen += keep
        if seen >= count:
            break
    return taken
