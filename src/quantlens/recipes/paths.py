"""Any field of a config by dotted path, for sweeps: `get_field(spec, "quantization.0.weights.format")`,
`with_field(spec, "quantization.0.weights.format", "mxfp4")` -> a new, validated config.

A path is field names of blocks, indices into lists (`quantization.0`, `data.augment.1`) and keys of
free mappings (`model.options.widths`). An unknown path is one ConfigError naming the path and the
keys known where it failed. `with_field` edits the config as its file would be edited and validates
the result: a block that derives defaults (a quantization entry: a role's format follows the entry's
format, a block format brings its block mode and size) leaves out what it derives
(`editable_values`), so a changed format brings its own defaults rather than keeping the old ones.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from quantlens.errors import ConfigError


def _parts(path: str) -> list[str]:
    parts = path.split(".") if isinstance(path, str) else []
    if not parts or any(not p for p in parts):
        raise ConfigError(f"{path!r} is not a field path: give names and indices separated by dots, "
                          f"e.g. 'quantization.0.weights.format'")
    return parts


def _known(node: Any) -> str:
    if isinstance(node, BaseModel):
        return f"known: {', '.join(type(node).model_fields)}"
    if isinstance(node, (tuple, list)):
        return f"indices 0..{len(node) - 1}" if node else "it is empty"
    if isinstance(node, dict):
        return f"known: {', '.join(map(str, node))}" if node else "it is empty"
    return ""


def _child(node: Any, part: str, path: str, where: str, new_key_ok: bool = False) -> Any:
    """The child `part` of `node` (at `where`); ConfigError naming `path` when there is none. A free
    mapping takes a new key as the last part of a path that sets it (`new_key_ok`)."""
    place = where or "the top level"
    if isinstance(node, BaseModel):
        if part in type(node).model_fields:
            return getattr(node, part)
        raise ConfigError(f"{path}: no field '{part}' in {place} ({_known(node)})")
    if isinstance(node, (tuple, list)):
        if part.isdigit() and int(part) < len(node):
            return node[int(part)]
        raise ConfigError(f"{path}: no index '{part}' in {place}, a list of {len(node)} ({_known(node)})")
    if isinstance(node, dict):
        if part in node or new_key_ok:
            return node.get(part)
        raise ConfigError(f"{path}: no key '{part}' in {place} ({_known(node)})")
    raise ConfigError(f"{path}: {place} is a value ({node!r}), not a block, list or mapping; it has no '{part}'")


def get_field(config: BaseModel, path: str) -> Any:
    """The value at `path` in `config` (a block, a tuple, a mapping or a plain value): as validated,
    defaults resolved (a role's mode reads 'block' for a block format)."""
    node: Any = config
    walked: list[str] = []
    for part in _parts(path):
        node = _child(node, part, path, ".".join(walked))
        walked.append(part)
    return node


def _plain(value: Any) -> Any:
    """A validated config as mappings and lists that validate back to it."""
    if isinstance(value, BaseModel):
        editable = getattr(value, "editable_values", None)
        fields = editable() if callable(editable) else {name: getattr(value, name) for name in type(value).model_fields}
        return {k: _plain(v) for k, v in fields.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def with_field(config: BaseModel, path: str, value: Any) -> BaseModel:
    """A copy of `config` with the field at `path` set to `value`, validated as a whole (ConfigError
    naming the field when the new value, or what it implies, is refused)."""
    parts = _parts(path)
    node: Any = config  # the validated config: checks the path, naming the known keys
    for i, part in enumerate(parts):
        node = _child(node, part, path, ".".join(parts[:i]), new_key_ok=i == len(parts) - 1)
    values = _plain(config)
    parent: Any = values
    for part in parts[:-1]:
        # a block leaves out what it derives: a path into it may lead through keys not written yet
        parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
    last = parts[-1]
    if isinstance(parent, list):
        parent[int(last)] = value
    else:
        parent[last] = value
    try:
        return type(config).model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        more = f" (+{exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{where or path}: {message} (with {path} = {value!r}){more}") from None
