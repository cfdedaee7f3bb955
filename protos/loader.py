"""YAML/JSON -> protobuf, with errors that name the file, the resource and the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message

from protos import registry
from protos.enums import upper_enum_names
from protos.errors import ConfigError

M = TypeVar("M", bound=Message)


def read_document(path: Path) -> Any:
    """Parse one YAML or JSON file (JSON is YAML, but JSON errors read better from json)."""
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        raise ConfigError(f"malformed {path.suffix.lstrip('.') or 'YAML'}: {error}",
                          source=str(path)) from error


def parse_message(obj: Any, cls: type[M], *, source: str = "", resource: str = "") -> M:
    """Protobuf's JSON mapping of `obj` into `cls`; unknown fields and bad values are errors.
    Enum names are taken in any case, as Envoy's parser takes them (protos.enums). Every
    nested `@type` is resolved (its module imported) before protobuf parses."""
    try:
        _check_any_types(obj, "")
    except ConfigError as error:
        raise error.within(source=source, resource=resource) from error
    message = cls()
    try:
        json_format.ParseDict(upper_enum_names(obj, cls.DESCRIPTOR), message,
                              ignore_unknown_fields=False)
    except json_format.ParseError as error:
        raise ConfigError(str(error), source=source, resource=resource) from error
    return message


def parse_any_resource(obj: Any, *, source: str = "", index: int = 0) -> Message:
    """One `{"@type": TYPE_URL, ...}` resource, as in Envoy's filesystem subscriptions."""
    if not isinstance(obj, dict) or "@type" not in obj:
        raise ConfigError("each resource needs an '@type'", source=source,
                          field=f"resources[{index}]")
    type_url = str(obj["@type"])
    if not registry.is_known(type_url):
        raise ConfigError(f"unknown @type {type_url!r}", source=source,
                          field=f"resources[{index}].@type")
    body = {key: value for key, value in obj.items() if key != "@type"}
    cls = registry.message_class(type_url)
    name = str(body.get("name") or body.get("cluster_name") or body.get("clusterName") or "")
    try:
        return parse_message(body, cls, source=source, resource=name)
    except ConfigError as error:
        raise error.within(field=f"resources[{index}]") from error


def unpack_any(packed: any_pb2.Any, *, field: str = "typed_config") -> Message:
    """Unpack a `google.protobuf.Any` into its generated class, or name the unknown type."""
    try:
        cls = registry.message_class(packed.type_url)
    except KeyError as error:
        raise ConfigError(f"unknown type {packed.type_url!r}", field=field) from error
    message = cls()
    if not packed.Unpack(message):
        raise ConfigError(f"cannot unpack {packed.type_url!r}", field=field)
    return message


def pack_any(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _check_any_types(obj: Any, path: str) -> None:
    """Name an unknown nested `@type` by its path before protobuf gives a vaguer error."""
    for key, value, child_path in _walk(obj, path):
        if key == "@type" and isinstance(value, str) and not registry.is_known(value):
            raise ConfigError(f"unknown @type {value!r}", field=child_path)


def _walk(obj: Any, path: str) -> Iterator[tuple[str, Any, str]]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            child = f"{path}.{key}" if path else str(key)
            yield str(key), value, child
            yield from _walk(value, child)
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield from _walk(value, f"{path}[{index}]")
