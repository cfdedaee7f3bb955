"""A YAML stream of objects, as plain data plus the line of every field.

PyYAML's composer gives each node a start mark; we build the plain data ourselves from the node
tree so that every mapping key and list item keeps its line (`Document.line_of(path)`). Input is
hostile until proven otherwise: the depth, the number of nodes built per document and per
stream (aliases are counted each time they are expanded, so an alias bomb stops early) and the
number of documents are bounded; duplicate keys are an error (as Kubernetes' strict decoding
reports them), and only YAML's safe tags are constructed. Every failure is a `MeshError`
naming the file and line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from controlplane.mesh.errors import Location, MeshError

Path = tuple[str | int, ...]

# libyaml's composer when PyYAML was built with it (about 10x faster on big streams); the
# pure-Python one otherwise. Both give the same nodes with the same marks.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_DEPTH = 64
MAX_NODES = 200_000  # per document, aliases counted each time they are expanded
MAX_DOCUMENTS = 20_000
MAX_STREAM_NODES = 2_000_000  # over the whole stream


@dataclass
class Document:
    """One YAML document: its data, its index in the stream and the line of each path."""

    data: Any
    source: str
    index: int
    lines: dict[Path, int] = field(default_factory=dict)

    @property
    def line(self) -> int:
        return self.lines.get((), 0)

    def line_of(self, path: Path) -> int:
        """The line of `path`, or of its nearest ancestor that has one."""
        while path:
            found = self.lines.get(path)
            if found is not None:
                return found
            path = path[:-1]
        return self.lines.get((), 0)


def format_path(path: Path) -> str:
    """("spec", "rules", 0, "matches") -> "spec.rules[0].matches"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_stream(text: str, source: str) -> list[Document]:
    """Every non-empty document of a YAML (or JSON) stream."""
    loader = _LOADER(text)
    documents: list[Document] = []
    try:
        index = 0
        budget = MAX_STREAM_NODES
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            if len(documents) >= MAX_DOCUMENTS:
                raise _error(source, node, f"more than {MAX_DOCUMENTS} documents")
            document = Document(None, source, index)
            builder = _Builder(loader, document, budget)
            document.data = builder.build(node)
            budget -= builder.nodes
            index += 1
            if document.data is not None:
                documents.append(document)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 0
        problem = error.problem or error.context or "malformed YAML"
        raise MeshError(f"malformed YAML: {problem}", Location(source, line)) from error
    except yaml.YAMLError as error:
        raise MeshError(f"malformed YAML: {error}", Location(source)) from error
    finally:
        loader.dispose()
    return documents


def _error(source: str, node: yaml.Node, message: str) -> MeshError:
    return MeshError(message, Location(source, node.start_mark.line + 1))


class _Builder:
    """Plain data from one node tree, recording lines; bounded in depth and size."""

    def __init__(self, loader: Any, document: Document, budget: int = MAX_STREAM_NODES) -> None:
        self.loader = loader
        self.document = document
        self.nodes = 0
        self.limit = min(MAX_NODES, budget)

    def build(self, node: yaml.Node) -> Any:
        return self._value(node, (), 0)

    def _value(self, node: yaml.Node, path: Path, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > self.limit:
            what = f"more than {MAX_NODES} values in one object" if self.limit == MAX_NODES \
                else f"more than {MAX_STREAM_NODES} values in one stream"
            raise self._fail(node, what)
        if depth > MAX_DEPTH:
            raise self._fail(node, f"nested deeper than {MAX_DEPTH} levels")
        self.document.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self._value(item, (*path, index), depth + 1)
                    for index, item in enumerate(node.value)]
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as error:
            raise self._fail(node, f"malformed YAML: {error.problem}") from error

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict[str, Any]:
        self.loader.flatten_mapping(node)  # YAML merge keys (<<), as Kubernetes takes them
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self._fail(key_node, "a mapping key must be a plain string")
            key = self.loader.construct_object(key_node)
            if not isinstance(key, str):
                key = str(key)  # `80: x` or `true: y`: Kubernetes keys are strings
            if key in out:
                raise self._fail(key_node, f"duplicate key {key!r} in "
                                           f"{format_path(path) or 'the object'}")
            self.document.lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = self._value(value_node, (*path, key), depth + 1)
        return out

    def _fail(self, node: yaml.Node, message: str) -> MeshError:
        return _error(self.document.source, node, message)


def walk_paths(data: Any, path: Path = ()) -> Iterator[Path]:
    """Every path in `data` (tests use it)."""
    yield path
    if isinstance(data, dict):
        for key, value in data.items():
            yield from walk_paths(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from walk_paths(value, (*path, index))
