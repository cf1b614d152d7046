"""Progress and notes from library code to whoever listens; the library itself never prints.

Library loops open a `task` ("decoding images", total 10,000) and advance it, and say things
worth a line with `note` or `warn`. A listener (the CLI's progress bars, a test's list) is
installed for a block with `listening(sink)`; without one, events go nowhere at almost no cost.
The listener is held in a context variable, set and restored around the block, so nested runs
and threads started elsewhere do not leak into each other. Worker threads do not inherit it:
emit from the thread that collects their results.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TaskStarted:
    task: int
    description: str
    total: int | None  # None: unknown length
    unit: str


@dataclass(frozen=True)
class TaskAdvanced:
    task: int
    advance: int
    status: str = ""


@dataclass(frozen=True)
class TaskFinished:
    task: int


@dataclass(frozen=True)
class Note:
    text: str
    level: Literal["info", "warning"] = "info"


Event = TaskStarted | TaskAdvanced | TaskFinished | Note
Sink = Callable[[Event], None]

_SINK: ContextVar[Sink | None] = ContextVar("quantlens_event_sink", default=None)
_IDS = itertools.count(1)


@contextlib.contextmanager
def listening(sink: Sink | None) -> Iterator[None]:
    """Send the events of the block to `sink` (None: to nobody)."""
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)


def emit(event: Event) -> None:
    sink = _SINK.get()
    if sink is not None:
        sink(event)


def note(text: str) -> None:
    emit(Note(text, "info"))


def warn(text: str) -> None:
    emit(Note(text, "warning"))


class Task:
    """A running phase; `advance(n)` as work completes. Silent (and cheap) without a listener."""

    def __init__(self, description: str, total: int | None, unit: str) -> None:
        self.id = next(_IDS)
        self._sink = _SINK.get()
        if self._sink is not None:
            self._sink(TaskStarted(self.id, description, total, unit))

    def advance(self, n: int = 1, status: str = "") -> None:
        if self._sink is not None:
            self._sink(TaskAdvanced(self.id, n, status))

    def finish(self) -> None:
        if self._sink is not None:
            self._sink(TaskFinished(self.id))
            self._sink = None


@contextlib.contextmanager
def task(description: str, total: int | None = None, unit: str = "items") -> Iterator[Task]:
    """A phase of work shown as one progress bar while the block runs."""
    running = Task(description, total, unit)
    try:
        yield running
    finally:
        running.finish()
