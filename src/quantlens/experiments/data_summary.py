"""`data.json`: what the run's data was and how its samples were used."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar


@dataclass(frozen=True)
class DataSummary:
    """The dataset (spec, fingerprint, classes, native layout), the split it was carved into, the
    evaluated samples and why, the calibration samples and where they came from, values that had to be
    lowered (`capped`), the files that could not be decoded, the subset `eval.max_samples` took (`limit`)
    and, for a binary task, which class is positive (`positive_class`)."""

    FILE: ClassVar[str] = "data.json"

    spec: str
    fingerprint: str
    n_samples: int
    class_names: list
    native_channels: int
    native_size: list | None
    class_counts: dict
    split: dict | None  # origin, file, sizes
    eval_split: dict  # name, n, reason, class_counts
    calibration: dict | None  # n, origin, indices
    selection: dict | None  # n, metric, indices (the `selection:` split that chooses among recipes)
    capped: dict  # field -> {"requested", "used"}
    skipped_files: list  # {"file", "reason"}
    # eval.max_samples: requested, n, of, seed, stratified_by, class_counts, pool_class_counts, indices;
    # None: every sample of the evaluation split was evaluated
    limit: dict | None = None
    # a binary task's positive class (eval.positive_class resolved): {"index", "name"}; None with more classes
    positive_class: dict | None = None

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> DataSummary:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})
