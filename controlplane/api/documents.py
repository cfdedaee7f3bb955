"""What Apply and Delete receive: YAML or JSON streams as bytes, each with the name of the
file it came from, read into objects (or keys) with errors naming file, line, object and
field. Input is hostile: bytes that are not UTF-8 are an error naming the line they are on,
and the loader's bounds (depth, values per object, objects per stream) hold for the whole
request too."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from controlplane.api.kinds import canonical_kind
from controlplane.mesh import MeshError, MeshObject, ObjectKey, Problem, read_objects
from controlplane.mesh.errors import Location
from controlplane.mesh.load import MAX_OBJECTS, _expand_lists
from controlplane.mesh.objects import DEFAULT_NAMESPACE
from controlplane.mesh.yamldoc import parse_stream

Source = tuple[str, bytes]  # (file name, content)


def text_of(source: str, content: bytes) -> str:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as error:
        line = content.count(b"\n", 0, error.start) + 1
        raise MeshError(f"not UTF-8: byte {error.start} (0x{content[error.start]:02x}) "
                        f"cannot be decoded", Location(source or "<input>", line)) from error


def read_sources(sources: Iterable[Source]) -> tuple[list[MeshObject], list[Problem]]:
    """Every object of every document, or the problems that stop them from loading."""
    objects: list[MeshObject] = []
    problems: list[Problem] = []
    for source, content in sources:
        try:
            found, errors = read_objects(text_of(source, content), source or "<input>")
        except MeshError as error:
            problems.append(_problem(error))
            continue
        objects += found
        problems += [_problem(error) for error in errors]
        if len(objects) > MAX_OBJECTS:
            problems.append(_problem(MeshError(f"more than {MAX_OBJECTS} objects in one "
                                               "request", Location(source))))
            break
    return objects, problems


def read_keys(sources: Iterable[Source]) -> tuple[list[tuple[ObjectKey, Location]],
                                                   list[Problem]]:
    """The objects documents name (kind, namespace, name: all `delete -f` needs), where."""
    keys: list[tuple[ObjectKey, Location]] = []
    problems: list[Problem] = []
    for source, content in sources:
        name = source or "<input>"
        try:
            errors: list[MeshError] = []
            documents = _expand_lists(parse_stream(text_of(source, content), name), errors)
        except MeshError as error:
            problems.append(_problem(error))
            continue
        for document in documents:
            try:
                keys.append((key_of(document.data, name, document.line), Location(
                    name, document.line)))
            except MeshError as error:
                problems.append(_problem(error))
        if len(keys) > MAX_OBJECTS:
            problems.append(_problem(MeshError(f"more than {MAX_OBJECTS} objects in one "
                                               "request", Location(name))))
            break
    return keys, problems


def key_of(data: Any, source: str, line: int) -> ObjectKey:
    where = Location(source, line)
    if not isinstance(data, dict):
        raise MeshError("not an object (a mapping with kind and metadata)", where)
    kind = canonical_kind(str(data.get("kind", "")))
    metadata = data.get("metadata")
    if kind is None:
        raise MeshError(f"unknown kind {data.get('kind')!r}", where)
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        raise MeshError("metadata.name is required", where)
    namespace = metadata.get("namespace") or DEFAULT_NAMESPACE
    return ObjectKey(kind, str(namespace), metadata["name"])


def _problem(error: MeshError) -> Problem:
    return Problem("error", "Invalid", error.message, error.location)
