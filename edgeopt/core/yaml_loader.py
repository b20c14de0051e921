"""Strict, bounded YAML loading for the files users write: hardware profiles and calibration manifests.

Plain YAML only (``yaml.SafeLoader``: no ``!!python`` or custom tags), and every document costs work in
proportion to its size:

- **anchors, aliases and merge keys** (``&name``, ``*name``, ``<<:``) are refused as soon as the parser
  meets them, before anything is built: an alias is how a 1 kB "billion laughs" file expands into
  billions of nodes, and neither a profile nor a manifest needs one;
- **nesting** deeper than :data:`MAX_DEPTH` is refused while composing (a 100,000-deep ``[[[…]]]`` would
  otherwise exhaust Python's recursion limit);
- **files** larger than :data:`MAX_BYTES` are refused before they are read;
- **duplicate keys** are refused at any depth, naming the dotted key and both lines.

Every refusal is one line raised as the caller's error class (``ConfigError`` for a profile, exit 2;
``CalibrationError`` for a manifest, exit 3) and starts with the file's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edgeopt.errors import EdgeoptError

__all__ = ["MAX_BYTES", "MAX_DEPTH", "YamlDocument", "load_yaml", "load_yaml_file"]

#: The deepest nesting accepted (a profile needs 6 levels: tensorrt.shape_profile.NAME.min[i]).
MAX_DEPTH = 32
#: The largest YAML file read, in bytes (the shipped profiles are about 2 kB).
MAX_BYTES = 4 * 2**20

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Refused(yaml.YAMLError):
    """A bounded-loading refusal raised from inside the loader, at a line of the file."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class _Duplicate(Exception):
    """A duplicate key: carries the full one-line message (not a YAML syntax problem)."""


@dataclass(frozen=True)
class YamlDocument:
    """A loaded document and the line (1-based) of every dotted key path (``bench.max_seconds``, ``a[0].b``)."""

    data: Any
    key_lines: dict[str, int]


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors, aliases, merge keys, deep nesting and duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.key_lines: dict[str, int] = {}
        self._paths: dict[int, str] = {}
        self._depth = 0

    # ------------------------------------------------------------------------------------- composing

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:  # type: ignore[override]
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(f"YAML alias *{event.anchor} refused: anchors and aliases are not accepted "
                           "(they can expand without bound); write the value out", event.start_mark)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise _Refused(f"YAML anchor &{anchor} refused: anchors and aliases are not accepted "
                           "(they can expand without bound); write the value out", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels; refused", event.start_mark)
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node | None:  # type: ignore[override]
        node = super().compose_document()
        if node is not None:
            self._index(node, "")
        return node  # type: ignore[no-any-return]

    def _index(self, node: yaml.Node, path: str) -> None:
        """Remember each node's dotted path and each key's line (bounded: no aliases, depth capped)."""
        self._paths[id(node)] = path
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    raise _Refused("YAML merge key << refused: write the keys out", key_node.start_mark)
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                child = f"{path}.{key}" if path else str(key)
                self.key_lines.setdefault(child, key_node.start_mark.line + 1)
                self._index(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._index(item, f"{path}[{i}]")

    # ---------------------------------------------------------------------------------- constructing

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        parent = self._paths.get(id(node), "")
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: SafeConstructor reports it below
                continue
            if duplicate:
                dotted = f"{parent}.{key}" if parent else str(key)
                raise _Duplicate(f"{dotted}: duplicate key (line {line}, first at line {seen[key]})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, *, source: str, error: type[EdgeoptError]) -> YamlDocument:
    """Parse one YAML document from ``text`` within the bounds above; refusals are ``error("<source>: …")``."""
    if len(text.encode("utf-8", errors="replace")) > MAX_BYTES:
        raise error(f"{source}: larger than {MAX_BYTES // 2**20} MiB; refused (a profile or manifest is a few kB)")
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # the reader refuses control characters here already
        data = loader.get_single_data()
    except _Duplicate as e:
        raise error(f"{source}: {e}") from e
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, max(e.position, 0)) + 1
        code = e.character if isinstance(e.character, int) else ord(e.character)
        raise error(f"{source}: line {line}: invalid YAML: {e.reason} (character #x{code:04x})") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        if isinstance(e, _Refused):
            raise error(f"{source}:{where} {problem}") from e
        if "constructor for the tag" in problem:
            problem += " (only plain YAML is accepted: no !!python or custom tags)"
        raise error(f"{source}:{where} invalid YAML: {problem}") from e
    except RecursionError as e:  # defence in depth: MAX_DEPTH keeps the composer far from the limit
        raise error(f"{source}: nested too deeply; refused") from e
    finally:
        if loader is not None:
            loader.dispose()
    return YamlDocument(data, loader.key_lines)


def load_yaml_file(path: Path, *, source: str, error: type[EdgeoptError], what: str = "YAML file") -> YamlDocument:
    """Read and parse ``path`` (a regular file of at most :data:`MAX_BYTES`) with :func:`load_yaml`.

    ``FileNotFoundError`` passes through for the caller to word; every other problem is ``error``."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise error(f"{source}: cannot read {what}: {e}") from e
    if path.is_dir() or not path.is_file():
        raise error(f"{source}: {what} is not a regular file")
    if stat.st_size > MAX_BYTES:
        raise error(f"{source}: {what} is {stat.st_size / 2**20:.1f} MiB, larger than {MAX_BYTES // 2**20} MiB; "
                    "refused (a profile or manifest is a few kB)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{source}: cannot read {what}: {' '.join(str(e).split())}") from e
    return load_yaml(text, source=source, error=error)
