"""Reading version-1 quantization entries (flat `{role}_*` keys) as version 2 (one recipe per role).

Version 1 wrote each role's settings as flat keys (`weight_mode`, `input_format`, `act_chunk_size`,
`bn_mode`) and three entry-wide keys that applied to every role (`scale`, `rounding`,
`calibration`). Version 2 holds one recipe per role (`weights`, `inputs`, `outputs`, `norm`). The
version of an entry is its `version` key; an entry without one is version 1 when it (or one of its
overrides) uses a version-1 key, else version 2 (an entry with neither kind of key means the same
in both). An unversioned entry may also hold version-2 keys beside version-1 ones (an old file
being edited), as long as no field is set twice. Migration is pure: it returns the version-2 values
and one-line notes, and prints nothing.
"""

from __future__ import annotations

from typing import Any

# version-1 key -> (version-2 role, field), for entries and for overrides (which had no bn_* keys)
V1_ROLE_KEYS: dict[str, tuple[str, str]] = {
    "weight_format": ("weights", "format"), "weight_mode": ("weights", "mode"),
    "weight_chunk_size": ("weights", "block_size"),
    "input_format": ("inputs", "format"), "input_mode": ("inputs", "mode"),
    "input_chunk_size": ("inputs", "block_size"),
    "act_format": ("outputs", "format"), "act_mode": ("outputs", "mode"), "act_chunk_size": ("outputs", "block_size"),
    "bn_format": ("norm", "format"), "bn_mode": ("norm", "mode"),
}
V1_OVERRIDE_KEYS = {k: v for k, v in V1_ROLE_KEYS.items() if not k.startswith("bn_")}
# Entry-wide version-1 keys -> (roles, field). `calibration` chose how input/output ranges were found;
# parameters were always scaled from their own values, so it becomes the activations' observer.
V1_SHARED_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    "scale": (("weights", "inputs", "outputs", "norm"), "scale"),
    "rounding": (("weights", "inputs", "outputs", "norm"), "rounding"),
    "calibration": (("inputs", "outputs"), "observer"),
}
V1_KEYS = frozenset(V1_ROLE_KEYS) | frozenset(V1_SHARED_KEYS)
V2_KEYS = frozenset(("weights", "inputs", "outputs", "norm"))


def _overrides(values: dict) -> list[tuple[int, dict]]:
    """(index, override) for each override that is a mapping (anything else is the field's to refuse)."""
    found = values.get("overrides")
    items = enumerate(found) if isinstance(found, (list, tuple)) else ()
    return [(i, o) for i, o in items if isinstance(o, dict)]


def _keys(values: dict, kind: frozenset[str]) -> list[str]:
    """The keys of `kind` an entry uses, its overrides' keys included (as `overrides.<i>.<key>`)."""
    found = [k for k in values if k in kind]
    for i, override in _overrides(values):
        found += [f"overrides.{i}.{k}" for k in override if k in kind]
    return found


def entry_version(values: dict) -> int | None:
    """1 or 2: the version `values` is written in; None when its `version` is neither (the field's own
    validation reports it)."""
    if "version" in values:
        version = values["version"]
        return version if type(version) is int and version in (1, 2) else None  # True is no version
    return 1 if _keys(values, V1_KEYS) else 2


def _move(target: dict, key: str, role: str, field: str, value: Any, where: str) -> None:
    """Put a version-1 value at `role.field` of `target` (copied, never changed in place)."""
    patch = target.get(role, {})
    if not isinstance(patch, dict):
        return  # not a mapping: the field refuses it, with its name
    if field in patch:
        raise ValueError(f"{where}{key} (version 1) and {where}{role}.{field} (version 2) both set "
                         f"{where}{role}.{field}; keep one")
    target[role] = {**patch, field: value}


def _migrated(source: dict, table: dict[str, tuple[str, str]], skip: frozenset[str], where: str,
              log: list[str]) -> dict:
    target = {k: v for k, v in source.items() if k not in skip}
    for key, (role, field) in table.items():
        if key in source:
            _move(target, key, role, field, source[key], where)
            log.append(f"{where}{key} -> {where}{role}.{field}")
    return target


def migrate_quantization_entry(values: dict) -> tuple[dict, list[str]]:
    """(the entry as version 2, notes): version-1 keys moved into per-role recipes, with one note saying
    what moved; a version-2 entry (or one whose version is invalid) comes back unchanged. An entry without
    `version` may hold both kinds of keys as long as they do not set the same field; one that states its
    version holds only that version's keys. ValueError when the keys contradict each other or the version."""
    version = entry_version(values)
    if version is None:
        return values, []
    if "version" in values:
        wrong = _keys(values, V2_KEYS if version == 1 else V1_KEYS)
        if wrong:
            hint = ("write the whole entry as version 2" if version == 1 else
                    "version 2 holds one recipe per role, e.g. weights: {mode: channel} for weight_mode: channel")
            raise ValueError(f"a version-{version} entry holds version-{3 - version} keys ({', '.join(wrong)}); "
                             f"{hint}")
    if version == 2:
        return values, []
    log: list[str] = []
    new = _migrated(values, V1_ROLE_KEYS, V1_KEYS | {"version"}, "", log)
    for key, (roles, field) in V1_SHARED_KEYS.items():
        if key in values:
            for role in roles:
                _move(new, key, role, field, values[key], "")
            log.append(f"{key} -> {', '.join(f'{role}.{field}' for role in roles)}")
    if isinstance(values.get("overrides"), (list, tuple)):
        new["overrides"] = [_migrated(o, V1_OVERRIDE_KEYS, frozenset(V1_OVERRIDE_KEYS), f"overrides.{i}.", log)
                            if isinstance(o, dict) else o for i, o in enumerate(values["overrides"])]
    moved = "; ".join(log) if log else "no key renamed"
    return {"version": 2, **new}, [f"version-1 entry read as version 2 ({moved}); write it as version 2 to drop "
                                   f"this note"]
