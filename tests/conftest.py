"""Shared fixtures: the real data beside the project, seeded randomness, a temporary run root."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QUANTLENS_SHARED", PROJECT_ROOT.parent / "shared"))


def _shared_path(relative: str) -> Path:
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"{path} is absent: this test needs the shared data beside the project (../shared)")
    return path


@pytest.fixture
def shared_path():
    """`shared_path("data/pneumoniamnist/pneumoniamnist.npz")` -> Path, or skip with the reason."""
    return _shared_path


def pytest_configure(config):
    # Under pytest-xdist each worker gets one core: torch's default of one thread per core would make
    # two workers fight over two cores, and OpenMP spin-waiting makes that many times slower.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def run_root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("EXPERIMENT_ROOT", str(root))
    return root


class CliResult:
    """Exit code and output of one in-process `quantlens` call."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error: ")]


@pytest.fixture
def cli(capsys, monkeypatch):
    """`cli("run", "--check", path)` -> CliResult: the command run in this process (fast enough for
    hundreds of calls). Anything but a clean exit (0) or a user error (2) propagates: a traceback."""
    import sys

    from quantlens.cli import main

    def invoke(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["quantlens", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke
