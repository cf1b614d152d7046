"""One registry per extension point (formats, layers, observers, backends, datasets, models).

Registration is by decorator; re-registering a name warns; lookups of unknown names raise an
error that lists close matches, so a typo on the command line gets a helpful one-line answer.
"""

from __future__ import annotations

import difflib
import fnmatch
import warnings
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from quantlens.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object table for one kind of extension (e.g. kind="model")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, obj: T) -> T:
        if name in self._items and self._items[name] is not obj:
            warnings.warn(f"{self.kind} {name!r} is registered again; the new one replaces it", stacklevel=3)
        self._items[name] = obj
        return obj

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: `@REG.register("name")` (or the object's `__name__` when no name is given)."""

        def decorate(obj: T) -> T:
            return self.add(name or obj.__name__, obj)

        return decorate

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names())})"

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a glob pattern, sorted."""
        return sorted(n for n in self._items if fnmatch.fnmatchcase(n, pattern))

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._items[n]) for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"
