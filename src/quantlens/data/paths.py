"""Checks on user-given paths, so a mistake reads as one line naming the path."""

from __future__ import annotations

from pathlib import Path

from quantlens.errors import DataError


def existing_path(argument: str | None, kind: str, *, default: str | None = None, want_dir: bool) -> Path:
    if not argument:
        if default is None:
            raise DataError(f"'{kind}' needs a path: '{kind}:<path>'")
        argument = default
    path = Path(argument).expanduser()
    if not path.exists():
        raise DataError(f"{kind}: {path} does not exist")
    if want_dir and not path.is_dir():
        raise DataError(f"{kind}: {path} is not a folder")
    if not want_dir and not path.is_file():
        raise DataError(f"{kind}: {path} is not a file")
    return path
