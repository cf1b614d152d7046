"""Reading an experiment YAML file into plain values, refusing what YAML would silently accept.

PyYAML alone lets the last of two duplicate keys win, reads an empty or comment-only file as
"nothing" (which would run the default experiment), recurses once per nesting level (a file
nested a thousand deep ends in RecursionError) and expands aliases without limit (a few lines of
"billion laughs" make 10^9 nodes for the validators to walk). Each of these is refused here with
one line naming the file and the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from quantlens.errors import ConfigError

MAX_DEPTH = 32  # nesting levels; the deepest real config (quantization -> overrides -> entry) uses 4
MAX_NODES = 100_000  # scalars, sequences and mappings after alias expansion
MAX_FILE_BYTES = 4 * 2**20


def _line(node: yaml.Node) -> str:
    return f"line {node.start_mark.line + 1}"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader with a depth limit, string keys only, and duplicate keys refused."""

    def __init__(self, stream: str, origin: str) -> None:
        super().__init__(stream)
        self.origin = origin
        self.depth = 0

    def compose_node(self, parent, index):  # noqa: ANN001  (PyYAML's signature)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise ConfigError(f"{self.origin}: nested more than {MAX_DEPTH} levels deep at line {mark.line + 1}")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):  # noqa: ANN001
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *defaults' merges, later keys override
                    continue
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                    raise ConfigError(f"{self.origin}: {_line(key_node)}: key {key_node.value!r} is not a string")
                if key_node.value in seen:
                    raise ConfigError(f"{self.origin}: {_line(key_node)}: duplicate key '{key_node.value}' "
                                      f"(first at {_line(seen[key_node.value])})")
                seen[key_node.value] = key_node
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes in the document once every alias is expanded (memoised: aliases share node objects)."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a recursive alias counts once rather than looping
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    memo[id(node)] = 1 + sum(_expanded_size(child, memo) for child in children)
    return memo[id(node)]


def parse_config_text(text: str, origin: str) -> Any:
    """The YAML document in `text` as plain Python values (ConfigError naming `origin` otherwise)."""
    loader = _StrictLoader(text, origin)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{origin}: the file is empty (or holds only comments); give at least one block, "
                              f"e.g. 'data: {{source: digits}}'")
        size = _expanded_size(node, {})
        if size > MAX_NODES:
            raise ConfigError(f"{origin}: the document expands to {size} values (aliases included), more than "
                              f"{MAX_NODES}")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{origin}: not valid YAML{where} ({problem})") from None
    except RecursionError:  # a construct PyYAML recurses on below our own depth limit
        raise ConfigError(f"{origin}: nested too deep") from None
    finally:
        loader.dispose()


def read_config_file(path: str | Path) -> Any:
    """Read and parse one config file: UTF-8 text (a BOM is allowed), at most MAX_FILE_BYTES."""
    path = Path(path).expanduser()
    try:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist" if not path.exists() else
                              f"config file {path} is not a file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(f"config file {path} is {size} bytes; a config holds at most {MAX_FILE_BYTES}")
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                          f"{exc.start})") from None
    return parse_config_text(text, str(path))
