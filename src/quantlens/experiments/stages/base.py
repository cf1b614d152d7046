"""Experiment stages: each a config block of the spec, a function of a small run context, and a typed
result that is written into the run folder and can be read back from it.

A stage is registered by name (its config block, e.g. "train", "quantization") with its place in
the run (`order`), whether the spec asks for it (`enabled`), what it does (`run`) and the type of
its result. The runner loops over the registered stages; a new stage is one file and one
`STAGES.add(...)` call. Results keep their files' layout: `to_dict` is what is written to `file`
(relative to the run folder) and `from_dict` reads it back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from quantlens.atomic import read_json
from quantlens.data import PreparedData, Split
from quantlens.data.source import ImageSource
from quantlens.experiments.record import RunRecord
from quantlens.experiments.setup import Setup
from quantlens.experiments.spec import ExperimentSpec
from quantlens.registry import Registry


class StageResult(Protocol):
    def to_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageResult: ...


@dataclass
class RunContext:
    """What every stage may use: the spec, the data at model layout, the model, the sample indices
    (evaluation, calibration, training splits), the run record, and earlier stages' results."""

    spec: ExperimentSpec
    source: ImageSource
    data: PreparedData
    setup: Setup
    root: Path
    record: RunRecord
    split: Split | None  # this run's holdout split (when training or asked for)
    trained_on: Split | None  # the checkpoint's training split, when quantlens trained it on this data
    eval_split: str
    eval_reason: str
    eval_idx: np.ndarray
    calib_idx: np.ndarray | None
    selection_idx: np.ndarray | None  # where recipes are chosen (`selection:`), disjoint from eval_idx
    model_info: dict  # the model's preprocessing, parameter count and where its weights came from
    results: dict[str, StageResult] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)  # in-memory hand-overs (e.g. FP32 predictions)


@dataclass(frozen=True)
class Stage:
    name: str  # the config block it runs, e.g. "train"
    order: int  # place in the run: lower first
    result_type: type  # with to_dict/from_dict, or save/load (a result that writes itself)
    file: str  # where the result lies, relative to the run folder
    enabled: Callable[[ExperimentSpec], bool]
    run: Callable[[RunContext], Any]
    writes_itself: bool = False  # the stage writes its result file (e.g. the benchmark session)


STAGES: Registry[Stage] = Registry("stage")


def ordered_stages() -> list[Stage]:
    return sorted((stage for _, stage in STAGES.items()), key=lambda s: s.order)


def save_result(stage: Stage, record: RunRecord, result: Any) -> None:
    if not stage.writes_itself:
        record.write_json(stage.file, result.to_dict())


def load_result(stage: Stage, run_dir: str | Path) -> Any:
    """Read a stage's result back from a run folder (complete, or still `.partial`)."""
    path = Path(run_dir) / stage.file
    if stage.writes_itself:
        return stage.result_type.load(path)
    return stage.result_type.from_dict(read_json(path, f"the {stage.name} stage's result"))
