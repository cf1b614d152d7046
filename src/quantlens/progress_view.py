"""The CLI's view of library events: one rich progress bar per running task, notes printed above them.

Library code never prints; it emits `quantlens.events` and this class, installed by the CLI with
`events.listening(view)`, renders them on the error console (results go to standard output).
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from quantlens.events import Event, Note, TaskAdvanced, TaskFinished, TaskStarted

DESCRIPTION_WIDTH = 30
STATUS_WIDTH = 16


def _cut(text: str, width: int) -> str:
    """`text`, shortened with an ellipsis to `width` characters (a bar's columns must stay whole)."""
    return text if len(text) <= width else text[:width - 1] + "…"


class CountColumn(ProgressColumn):
    """'done/total unit', or 'done unit' for a task of unknown length (a pass, a search)."""

    def render(self, task: Task) -> Text:
        done = f"{task.completed:.0f}" if task.total is None else f"{task.completed:.0f}/{task.total:.0f}"
        return Text(f"{done} {task.fields.get('unit', '')}".rstrip())


class ProgressView:
    """A `quantlens.events` sink; use as a context manager around the work."""

    def __init__(self, console: Console) -> None:
        self.console = console
        # Widths chosen so a bar fits a 100-column terminal: 30 + 12 + 17 + 7 + 3 + 7 + 16 + separators.
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(bar_width=12),
            CountColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[status]}"), console=console,
            transient=True)
        self._tasks: dict[int, TaskID] = {}

    def __enter__(self) -> ProgressView:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def __call__(self, event: Event) -> None:
        if isinstance(event, TaskStarted):
            self._tasks[event.task] = self._progress.add_task(_cut(event.description, DESCRIPTION_WIDTH),
                                                              total=event.total, unit=event.unit, status="")
        elif isinstance(event, TaskAdvanced) and event.task in self._tasks:
            fields = {"status": _cut(event.status, STATUS_WIDTH)} if event.status else {}
            self._progress.update(self._tasks[event.task], advance=event.advance, **fields)
        elif isinstance(event, TaskFinished) and event.task in self._tasks:
            self._progress.remove_task(self._tasks.pop(event.task))
        elif isinstance(event, Note):
            # Text, not markup: messages hold brackets and paths that must print as they are
            line = Text.assemble(("warning: ", "yellow"), event.text) if event.level == "warning" else Text(event.text)
            self._progress.console.print(line, highlight=False, soft_wrap=True)
