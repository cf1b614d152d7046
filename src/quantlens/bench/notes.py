"""What makes a benchmark less trustworthy than it looks, as data on the result.

A comparison or a benchmark report carries its caveats as `BenchmarkNote`s (a noisy run, records
from different machines, a warm-up that never settled, a backend that disagrees with FP32 ...):
frozen values that are written to JSON, read back, and printed by whoever shows the result (the
CLI prints them under the tables). Nothing here prints or warns on its own; a caller that wants
Python warnings asks for them with `issue_warnings(notes)` (or `Comparison.warn()`,
`BenchmarkReport.warn()`), and each note becomes a warning of its kind's category, so
`warnings.simplefilter("error", NoisyRunWarning)` and `pytest.warns` keep working.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from quantlens.errors import QuantlensError


class BenchmarkWarning(UserWarning):
    """Something makes a benchmark comparison less trustworthy than it looks."""


class NoisyRunWarning(BenchmarkWarning):
    """A candidate's samples spread more than `noise_threshold` (robust CV)."""


class DifferentMachinesWarning(BenchmarkWarning):
    """Records from different machines were compared (allowed explicitly)."""


# Note kind -> the warning category `issue_warnings` uses; any other kind is a BenchmarkWarning.
WARNING_CATEGORIES: Mapping[str, type[BenchmarkWarning]] = {
    "noisy": NoisyRunWarning, "different_machines": DifferentMachinesWarning}


@dataclass(frozen=True)
class BenchmarkNote:
    """One caveat in words, with what it is about.

    kind: a short tag ("noisy", "different_machines", "warmup", "agreement", "load", "skipped" ...)
    that lets a reader filter notes without parsing their text; backend / batch_size: what the
    note is about, when it is about one backend or one batch size ("" / None otherwise).
    """

    kind: str
    text: str
    backend: str = ""
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind:
            raise QuantlensError(f"a benchmark note needs a kind, got {self.kind!r}")
        if not isinstance(self.text, str) or not self.text:
            raise QuantlensError(f"a benchmark note needs a text, got {self.text!r}")

    def __str__(self) -> str:
        return self.text if self.batch_size is None else f"batch {self.batch_size}: {self.text}"

    def at_batch(self, batch_size: int) -> BenchmarkNote:
        """The same note, said of one batch size (a comparison's note, inside a report)."""
        return BenchmarkNote(self.kind, self.text, self.backend, batch_size)

    @property
    def category(self) -> type[BenchmarkWarning]:
        return WARNING_CATEGORIES.get(self.kind, BenchmarkWarning)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "backend": self.backend, "batch_size": self.batch_size}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchmarkNote:
        try:
            return cls(kind=data["kind"], text=data["text"], backend=data.get("backend", ""),
                       batch_size=data.get("batch_size"))
        except (KeyError, TypeError) as error:
            raise QuantlensError(f"not a benchmark note: {data!r} ({error})") from None


def issue_warnings(notes: Iterable[BenchmarkNote], *, stacklevel: int = 2) -> None:
    """Issue each note as a Python warning of its category (for callers that use `warnings`)."""
    for note in notes:
        warnings.warn(str(note), note.category, stacklevel=stacklevel + 1)
