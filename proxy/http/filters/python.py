"""Filters written in Python, configured through `xds.type.v3.TypedStruct`.

    http_filters:
    - name: hello
      typed_config:
        "@type": type.googleapis.com/xds.type.v3.TypedStruct
        type_url: type.googleapis.com/pointsman.filters.http.Python
        value: {class: "examples.python_filter.filter:StampFilter", config: {header: x-stamp}}

`class` names an `HttpFilter` subclass (module:attribute); it is imported at config time and
constructed per stream as `cls(config_dict)`. Envoy itself does not know this type URL, so
such a bootstrap only runs in Pointsman.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from protos.errors import ConfigError
from proxy.context import ServerContext
from proxy.http.filter import FilterMaker, HttpFilter, register_http_filter

PYTHON_FILTER_TYPE_URL = "type.googleapis.com/pointsman.filters.http.Python"


@dataclass(frozen=True)
class PythonFilterConfig:
    filter_class: type[HttpFilter]
    config: dict[str, Any]


def load_filter_class(spec: str) -> type[HttpFilter]:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not attribute:
        raise ConfigError("expected 'module:Class'", field="value.class")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"cannot import {spec!r}: {error}", field="value.class") from error
    if not (isinstance(found, type) and issubclass(found, HttpFilter)):
        raise ConfigError(f"{spec!r} is not an HttpFilter subclass", field="value.class")
    return found


class TypedStructFactory:
    """Dispatches `xds.type.v3.TypedStruct` by its inner type_url (only the Python filter)."""

    name = "pointsman.filters.http.python"
    config_type = "xds.type.v3.TypedStruct"

    def translate(self, message: Message) -> PythonFilterConfig:
        m: Any = message
        if m.type_url != PYTHON_FILTER_TYPE_URL:
            raise ConfigError(f"TypedStruct type_url {m.type_url!r} is not supported",
                              field="type_url")
        value = json_format.MessageToDict(m.value)
        unknown = set(value) - {"class", "config"}
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)}", field="value")
        config = value.get("config") or {}
        if not isinstance(config, dict):
            raise ConfigError("must be an object", field="value.config")
        return PythonFilterConfig(load_filter_class(str(value.get("class", ""))), config)

    def create(self, config: PythonFilterConfig, context: ServerContext, *,
               stat_prefix: str = "", name: str = "") -> FilterMaker:
        filter_class, settings = config.filter_class, config.config
        return lambda: filter_class(settings)  # type: ignore[call-arg]


register_http_filter(TypedStructFactory())
