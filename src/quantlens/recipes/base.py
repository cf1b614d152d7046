"""The base of every config block: frozen, strictly typed, and unknown keys are errors.

Strict types: a config value is taken as written or refused with the field named. `'2'` is not an
integer, `true` is not a number, `2.5` is not an integer and `'yes'` is not a boolean; integers
must fit in 64 bits; floats must be finite (no `.inf`, no `.nan`); strings hold no NUL and no
more than `MAX_STRING_BYTES` bytes. Lists are read as tuples (config objects are immutable).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Longest string a config accepts: PATH_MAX on Linux, so any path fits; names have their own limit.
MAX_STRING_BYTES = 4096


def _problem(value: Any, where: str = "") -> str | None:
    """Why `value` (at sub-path `where`) cannot be a config value, or None; walks tuples, lists and dicts."""
    at = f" (at {where})" if where else ""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return None if INT64_MIN <= value <= INT64_MAX else f"{value} does not fit in a 64-bit integer{at}"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value} is not a finite number{at}"
    if isinstance(value, str):
        if "\x00" in value:
            return f"a string holds a NUL character{at}"
        size = len(value.encode("utf-8", "surrogatepass"))
        return None if size <= MAX_STRING_BYTES else f"a string of {size} bytes is too long (at most " \
                                                      f"{MAX_STRING_BYTES}){at}"
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _problem(item, f"{where}[{i}]" if where else f"[{i}]")
            if found:
                return found
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"key {key!r} is not a string{at}"
            found = _problem(item, f"{where}.{key}" if where else key)
            if found:
                return found
    return None


def _as_tuples(value: Any) -> Any:
    """Lists (and lists of lists) as tuples; mappings are left to the block that validates them."""
    if isinstance(value, list):
        return tuple(_as_tuples(item) for item in value)
    return value


def block_class(annotation: Any) -> type[BaseModel] | None:
    """The config block class behind a field annotation (unwrapping tuple[Block, ...] and unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = block_class(arg)
        if found is not None:
            return found
    return None


def _admits_bool(annotation: Any) -> bool:
    """Whether a field annotation accepts a boolean as such (`bool`, `Any`), not as the integer 0 or 1."""
    if annotation is bool or annotation is Any:
        return True
    return any(_admits_bool(arg) for arg in getattr(annotation, "__args__", ()) if not isinstance(arg, (int, str)))


class Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _plain_values(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, BaseModel) or (field is not None and block_class(field.annotation) is not None):
            return _as_tuples(value)  # a nested block checks its own fields, naming them
        if isinstance(value, bool) and field is not None and not _admits_bool(field.annotation):
            raise ValueError(f"{value} is a boolean; this field takes no boolean")
        problem = _problem(value)
        if problem:
            raise ValueError(problem)
        return _as_tuples(value)
