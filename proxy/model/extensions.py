"""Translators of extension configs, found by the full proto name of their typed_config (Envoy
finds an extension's factory by its type URL; the `name` is informational).

The model translates listeners and route tables without importing the extensions: each
extension registers its translators here from its own package when imported (network filters
in `proxy.network`, HTTP filters' per-route configs in `proxy.http.filters`);
`proxy.bootstrap.ensure_network_filters` imports the ones we ship. A type nobody registered
is refused by the translator that meets it, naming the field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

Translate = Callable[[Message], Any]

_NETWORK_FILTERS: dict[str, Translate] = {}
_READ_FILTERS: dict[str, Translate] = {}
_PER_ROUTE_CONFIGS: dict[str, Translate] = {}


def register_network_filter(type_name: str, translate: Translate) -> None:
    """A network filter's typed_config translator (proto -> frozen config)."""
    _NETWORK_FILTERS[type_name] = translate


def network_filter_translator(type_name: str) -> Translate | None:
    return _NETWORK_FILTERS.get(type_name)


def unregister_network_filter(type_name: str) -> None:
    _NETWORK_FILTERS.pop(type_name, None)


def register_read_filter(type_name: str, translate: Translate) -> None:
    """A non-terminal network filter's translator: a read filter that sees the downstream
    bytes before the chain's terminal filter (Envoy's Network::ReadFilter, e.g. rbac)."""
    _READ_FILTERS[type_name] = translate


def read_filter_translator(type_name: str) -> Translate | None:
    return _READ_FILTERS.get(type_name)


def unregister_read_filter(type_name: str) -> None:
    _READ_FILTERS.pop(type_name, None)


def register_per_route(type_name: str, translate: Translate) -> None:
    """An HTTP filter's per-route config translator (typed_per_filter_config entries of this
    type, Envoy's createRouteSpecificFilterConfig)."""
    _PER_ROUTE_CONFIGS[type_name] = translate


def per_route_translator(type_name: str) -> Translate | None:
    return _PER_ROUTE_CONFIGS.get(type_name)
