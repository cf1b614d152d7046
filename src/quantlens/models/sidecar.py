"""The JSON file saved beside a checkpoint that quantlens trained (`best.safetensors` -> `best.json`).

It records what the weights need to be used correctly later: the model and its options, the
input layout and normalisation, the class names, and which samples it was trained on (dataset
fingerprint and split settings), so that evaluating it later uses the same preprocessing and,
on the same data, the same held-out test samples.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from quantlens.atomic import write_json
from quantlens.errors import CheckpointError


@dataclass(frozen=True)
class CheckpointSidecar:
    model: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    data_spec: str
    data_fingerprint: str
    split: dict[str, Any] = field(default_factory=dict)  # val_fraction, test_fraction, split_seed
    options: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def path_for(weights: str | Path) -> Path:
        return Path(weights).expanduser().with_suffix(".json")

    def save(self, weights: str | Path) -> Path:
        return write_json(self.path_for(weights), asdict(self))

    @classmethod
    def find(cls, weights: str | Path | None) -> CheckpointSidecar | None:
        """The sidecar of `weights` when one exists beside it."""
        if weights is None:
            return None
        path = cls.path_for(weights)
        if not path.is_file():
            return None
        try:
            values = json.loads(path.read_text())
            values["image_size"] = tuple(values["image_size"])
            for key in ("mean", "std", "class_names"):
                values[key] = tuple(values[key])
            return cls(**values)
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path} (the checkpoint's sidecar) is unreadable: {exc}") from None
