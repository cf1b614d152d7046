"""A run folder: every result of one run, written so that nothing incomplete looks complete.

The folder is created as `<id>.partial/`; every file in it is written atomically; only when the
run finishes is `run.json` written with status "complete" and the folder renamed to `<id>/`. A
crash leaves a `.partial` folder with `run.json` saying "failed" (or nothing, if the process was
killed), which no reader mistakes for a result.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from quantlens import __version__
from quantlens.atomic import write_json, write_text
from quantlens.environment import capture_environment
from quantlens.errors import ConfigError, describe

PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class RunStatus:
    """`run.json`: whether the run completed (or failed, and why), the command, the quantlens version,
    when it started and how long it took, and facts the run noted (`info`: data, model, split, ...)."""

    FILE: ClassVar[str] = "run.json"

    run_id: str
    status: str  # "complete" | "failed"
    command: str
    quantlens: str
    started: str  # ISO 8601, seconds
    seconds: float
    error: str | None = None
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        fixed = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("info", "error")}
        return {**fixed, **({"error": self.error} if self.error is not None else {}), **self.info}

    @classmethod
    def from_dict(cls, data: dict) -> RunStatus:
        known = {f.name for f in fields(cls)} - {"info"}
        return cls(**{k: v for k, v in data.items() if k in known},
                   info={k: v for k, v in data.items() if k not in known})


def default_run_root(configured: str | None = None) -> Path:
    """`--out` / output.root, else $EXPERIMENT_ROOT, else ./runs."""
    return Path(configured or os.environ.get("EXPERIMENT_ROOT") or "runs").expanduser()


def _root_origin(configured: str | None) -> str:
    if configured:
        return "output.root"
    return "$EXPERIMENT_ROOT" if os.environ.get("EXPERIMENT_ROOT") else "the default run root"


def check_run_root(configured: str | None = None) -> Path:
    """The run root, checked without writing anything: it, or the folder it would be made in, must be a
    writable folder. ConfigError naming output.root (or where the root came from) otherwise."""
    root = default_run_root(configured)
    existing = root.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    problem = None
    if not existing.is_dir():
        problem = f"{existing} is not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is not writable"
    if problem:
        raise ConfigError(f"{_root_origin(configured)}: cannot write runs to {root}: {problem}")
    return root


def prepare_run_root(configured: str | None = None) -> Path:
    """The run root, created, and proven writable by creating and removing a file in it."""
    root = check_run_root(configured)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".quantlens-write-test-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{_root_origin(configured)}: cannot write runs to {root}: "
                          f"{exc.strerror or describe(exc)}") from None
    return root


class RunRecord:
    """Writes one run's files; use as a context manager so success or failure is always recorded."""

    def __init__(self, root: Path, name: str, *, command: str | None = None) -> None:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.root = root
        self.run_id = f"{stamp}-{name}-{secrets.token_hex(2)}"
        self.final_dir = root / self.run_id
        self.dir = root / (self.run_id + PARTIAL_SUFFIX)
        self.dir.mkdir(parents=True, exist_ok=False)
        self.command = command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        self._started = time.time()
        self._info: dict[str, Any] = {}

    def path(self, relative: str) -> Path:
        return self.dir / relative

    def write_json(self, relative: str, obj: Any) -> Path:
        return write_json(self.path(relative), obj)

    def write_text(self, relative: str, text: str) -> Path:
        return write_text(self.path(relative), text)

    def write_environment(self, seeds: dict[str, int]) -> None:
        self.write_json("environment.json", capture_environment(seeds))

    def note(self, **info: Any) -> None:
        """Add facts to run.json (e.g. skipped files, the split used)."""
        self._info.update(info)

    def _status(self, status: str, error: str | None = None) -> dict:
        return RunStatus(self.run_id, status, self.command, __version__,
                         dt.datetime.fromtimestamp(self._started).isoformat(timespec="seconds"),
                         round(time.time() - self._started, 3), error, dict(self._info)).to_dict()

    def __enter__(self) -> RunRecord:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            self.write_json(RunStatus.FILE, self._status("complete"))
            os.replace(self.dir, self.final_dir)
            self.dir = self.final_dir
        else:
            self.write_json(RunStatus.FILE, self._status("failed", error=f"{type(exc).__name__}: {exc}"))
        return False
