"""Strict reading of one object's plain data into typed values, naming the field on error.

`Fields` wraps a mapping at a path of a document. Each accessor takes one key, checks its type
and constraints (the CRD's OpenAPI rules: patterns, lengths, bounds, enums) and marks it read;
`done()` then refuses every key that was not read: nothing in an object is ignored silently.
Errors are `MeshError`s with the file, the line of the field and its full path.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from controlplane.mesh.errors import Location, MeshError
from controlplane.mesh.yamldoc import Document, Path, format_path

T = TypeVar("T")

# Gateway API Duration (GEP-2257): a strict subset of Go's time.ParseDuration.
_DURATION = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")
_DURATION_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
# Go time.ParseDuration, which Envoy Gateway's own duration fields accept too (its CRDs use
# the same Gateway API Duration type; kept separate in case that changes).
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")


class Context:
    """Where the data came from: the document and the object's label for errors."""

    def __init__(self, document: Document, obj: str = "") -> None:
        self.document = document
        self.obj = obj

    def location(self, path: Path) -> Location:
        return Location(self.document.source, self.document.line_of(path), self.obj,
                        format_path(path))

    def error(self, path: Path, message: str) -> MeshError:
        return MeshError(message, self.location(path))


class Fields:
    """A mapping being read; `done()` refuses what was not read."""

    def __init__(self, context: Context, path: Path, value: Any) -> None:
        if not isinstance(value, dict):
            raise context.error(path, f"must be a mapping, not {_type_name(value)}")
        self.context = context
        self.path = path
        self.data: dict[str, Any] = value
        self.read: set[str] = set()

    # ---- plumbing ---------------------------------------------------------------------------

    def at(self, key: str | int) -> Path:
        return (*self.path, key)

    def error(self, key: str | int | None, message: str) -> MeshError:
        return self.context.error(self.path if key is None else self.at(key), message)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str) -> Any:
        self.read.add(key)
        return self.data.get(key)

    def _get(self, key: str, required: bool) -> Any:
        self.read.add(key)
        value = self.data.get(key)
        if value is None and required:
            raise self.error(key, "is required")
        return value

    def done(self, unsupported: Iterable[str] = ()) -> None:
        """Refuse every key not read: `unsupported` ones are known fields we do not implement."""
        known = set(unsupported)
        for key in self.data:
            if key in self.read:
                continue
            if key in known:
                raise self.error(key, "field is not supported by Pointsman (docs/mesh.md "
                                      "lists what is)")
            raise self.error(key, "unknown field")

    # ---- scalars ----------------------------------------------------------------------------

    def text(self, key: str, *, required: bool = False, default: str | None = None,
            pattern: re.Pattern[str] | None = None, min_len: int = 0,
            max_len: int | None = None, enum: Iterable[str] | None = None) -> str | None:
        value = self._get(key, required)
        if value is None:
            return default
        return self._check_str(key, value, pattern=pattern, min_len=min_len, max_len=max_len,
                               enum=enum)

    def req_str(self, key: str, **checks: Any) -> str:
        value = self.text(key, required=True, **checks)
        assert value is not None
        return value

    def _check_str(self, key: str | int, value: Any, *, pattern: re.Pattern[str] | None = None,
                   min_len: int = 0, max_len: int | None = None,
                   enum: Iterable[str] | None = None) -> str:
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {_type_name(value)}")
        if len(value) < min_len:
            raise self.error(key, "must not be empty" if min_len == 1
                             else f"must be at least {min_len} characters")
        if max_len is not None and len(value) > max_len:
            raise self.error(key, f"must be at most {max_len} characters")
        if enum is not None:
            allowed = list(enum)
            if value not in allowed:
                raise self.error(key, f"unsupported value {value!r} (supported: "
                                      f"{', '.join(allowed)})")
        if pattern is not None and not pattern.match(value):
            raise self.error(key, f"invalid value {value!r} (must match {pattern.pattern})")
        return value

    def integer(self, key: str, *, required: bool = False, default: int | None = None,
            minimum: int | None = None, maximum: int | None = None) -> int | None:
        value = self._get(key, required)
        if value is None:
            return default
        return self._check_int(key, value, minimum, maximum)

    def _check_int(self, key: str | int, value: Any, minimum: int | None,
                   maximum: int | None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, not {_type_name(value)}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be at most {maximum}")
        return value

    def number(self, key: str, *, default: float | None = None, minimum: float | None = None,
               maximum: float | None = None) -> float | None:
        value = self._get(key, False)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, not {_type_name(value)}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be at most {maximum}")
        return float(value)

    def flag(self, key: str, *, default: bool | None = None) -> bool | None:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, not {_type_name(value)}")
        return value

    def duration(self, key: str, *, required: bool = False) -> float | None:
        """A Gateway API Duration (GEP-2257), in seconds."""
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, str) or not _DURATION.match(value):
            raise self.error(key, f"invalid duration {value!r} (GEP-2257: e.g. 1h, 30s, "
                                  "500ms, 1m30s)")
        return sum(int(number) * _UNIT_SECONDS[unit]
                   for number, unit in _DURATION_PART.findall(value))

    def ip(self, key: str, *, required: bool = False) -> str | None:
        value = self.text(key, required=required)
        if value is None:
            return None
        try:
            return str(ipaddress.ip_address(value))
        except ValueError as error:
            raise self.error(key, f"invalid IP address {value!r}") from error

    def cidr(self, key: str | int, value: Any) -> str:
        text = self._check_str(key, value)
        try:
            return str(ipaddress.ip_network(text, strict=False))
        except ValueError as error:
            raise self.error(key, f"invalid CIDR {text!r}") from error

    # ---- structures -------------------------------------------------------------------------

    def obj(self, key: str, parse: Callable[[Fields], T], *, required: bool = False) -> T | None:
        value = self._get(key, required)
        if value is None:
            return None
        child = Fields(self.context, self.at(key), value)
        result = parse(child)
        child.done()
        return result

    def items(self, key: str, parse: Callable[[Item], T], *, required: bool = False,
             min_items: int = 0, max_items: int | None = None) -> tuple[T, ...]:
        value = self._get(key, required)
        if value is None:
            value = []
        if not isinstance(value, list):
            raise self.error(key, f"must be a list, not {_type_name(value)}")
        if len(value) < min_items:
            raise self.error(key, f"needs at least {min_items} item(s)")
        if max_items is not None and len(value) > max_items:
            raise self.error(key, f"at most {max_items} items (has {len(value)})")
        return tuple(parse(Item(self.context, self.at(key), index, item))
                     for index, item in enumerate(value))

    def obj_list(self, key: str, parse: Callable[[Fields], T], **bounds: Any) -> tuple[T, ...]:
        """A list of mappings, each read strictly."""
        return self.items(key, lambda item: item.obj(parse), **bounds)

    def text_list(self, key: str, *, max_items: int | None = None, **checks: Any
                 ) -> tuple[str, ...]:
        return self.items(key, lambda item: item.text(**checks), max_items=max_items)

    def text_map(self, key: str) -> dict[str, str]:
        value = self._get(key, False)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(key, f"must be a mapping, not {_type_name(value)}")
        for name, item in value.items():
            if not isinstance(item, str):
                raise self.context.error((*self.at(key), name),
                                         f"must be a string, not {_type_name(item)}")
        return dict(value)


class Item:
    """One list item being read."""

    def __init__(self, context: Context, list_path: Path, index: int, value: Any) -> None:
        self.context = context
        self.path: Path = (*list_path, index)
        self.index = index
        self.value = value

    def error(self, message: str) -> MeshError:
        return self.context.error(self.path, message)

    def obj(self, parse: Callable[[Fields], T]) -> T:
        fields = Fields(self.context, self.path, self.value)
        result = parse(fields)
        fields.done()
        return result

    def text(self, **checks: Any) -> str:
        holder = Fields(self.context, self.path[:-1], {})
        return holder._check_str(self.index, self.value, **checks)

    def integer(self, minimum: int | None = None, maximum: int | None = None) -> int:
        holder = Fields(self.context, self.path[:-1], {})
        return holder._check_int(self.index, self.value, minimum, maximum)

    def cidr(self) -> str:
        holder = Fields(self.context, self.path[:-1], {})
        return holder.cidr(self.index, self.value)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)
