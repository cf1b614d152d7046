"""Where the `quantlens` command prints: results on stdout, errors and warnings on stderr (160 columns
when not a terminal, so files and pipes get whole table rows)."""

from rich.console import Console

out = Console(width=None if Console().is_terminal else 160)
err = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 160)
