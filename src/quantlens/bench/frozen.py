"""Deep-frozen copies of JSON-like data, so that a frozen record cannot be changed through a
nested dict or list it holds (a frozen dataclass alone only stops re-binding its fields)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from quantlens.atomic import to_jsonable
from quantlens.errors import QuantlensError


def freeze(value: Any) -> Any:
    """Mappings become read-only `MappingProxyType`s with string keys; lists, tuples, sets and
    arrays become tuples; numpy scalars become Python scalars; everything else is kept."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, np.ndarray):
        return freeze(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def thaw(value: Any) -> Any:
    """Inverse of `freeze` for serialisation: mappings -> dicts, tuples -> lists."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


def frozen_json_mapping(value: Mapping[str, Any] | None, what: str) -> Mapping[str, Any]:
    """A frozen copy of `value` (empty when None); a QuantlensError unless it is JSON-serialisable."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise QuantlensError(f"{what} must be a mapping, got {type(value).__name__}")
    frozen = freeze(value)
    try:
        json.dumps(to_jsonable(thaw(frozen)), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise QuantlensError(f"{what} must hold only JSON-serialisable values: {error}") from None
    return frozen
