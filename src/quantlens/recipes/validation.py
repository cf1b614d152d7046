"""A pydantic validation error of a config block as one line: the field's path, what was wrong, the value
given, and for an unknown key the keys its block knows."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ValidationError

from quantlens.recipes.base import block_class


def _block_fields(root: type[BaseModel], loc: tuple) -> list[str]:
    """The known keys of the block of `root` where an unknown key was found (at `loc`)."""
    model: type[BaseModel] | None = root
    for part in loc[:-1]:
        if isinstance(part, int):  # an index into a list of blocks
            continue
        field = model.model_fields.get(str(part)) if model else None
        model = block_class(field.annotation) if field else None
        if model is None:
            return []
    return list(model.model_fields)


def describe_validation_error(exc: ValidationError, origin: str, root: type[BaseModel]) -> str:
    """The first problem of a pydantic error raised validating `root` as one line naming the field."""
    first = exc.errors()[0]
    loc = tuple(first["loc"])
    where = ".".join(str(p) for p in loc)
    more = f" (+{exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    if first["type"] == "extra_forbidden":
        known = _block_fields(root, loc)
        return f"{origin}: unknown key '{where}'" + (f" (known: {', '.join(known)})" if known else "") + more
    message = str(first["msg"]).removeprefix("Value error, ")
    # pydantic names Python types; a config file has lists and mappings
    message = re.sub(r"a valid dictionary or instance of \w+", "a mapping of keys", message)
    message = message.replace("a valid tuple", "a list").replace("a valid dictionary", "a mapping")
    if first["type"] not in ("value_error", "missing") and "input" in first:
        message += f" (got {shown(first['input'])})"
    return f"{origin}: {where}: {message}" + more if where else f"{origin}: {message}" + more


def shown(value: Any) -> str:
    """A short description of an offending value: its repr (cut) and, when it may surprise, its type."""
    text = repr(list(value) if isinstance(value, tuple) else value)
    text = text if len(text) <= 40 else text[:37] + "..."
    kind = {bool: "a boolean", str: "a string", float: "a float", int: "an integer"}.get(type(value))
    if kind is None:
        kind = {list: "a list", tuple: "a list", dict: "a mapping", type(None): "null"}.get(type(value), "")
    return f"{text}, {kind}" if kind and kind != "null" else text
