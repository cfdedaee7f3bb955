"""The network-filter interface and its registry (Envoy `envoy/network/filter.h`, simplified).

A listener accepts a socket, runs listener filters (which only peek or consume exactly their
own bytes), picks a filter chain, and hands a `DownstreamConnection` to the chain's terminal
network filter. The filter owns the socket from then on and must close it in `finally`.

Factories are registered by the full protobuf name of their `typed_config` (Envoy resolves
extensions by type URL; the `name` field is informational). Each factory translates its proto
once, at config time, into a frozen config object, and creates filter instances from it.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from google.protobuf.message import Message

from protos.errors import ConfigError
from proxy.model.extensions import register_network_filter, unregister_network_filter

if TYPE_CHECKING:
    from proxy.context import ServerContext


@dataclass(eq=False)
class DownstreamConnection:
    """An accepted downstream connection, after listener filters and chain selection."""

    sock: socket.socket  # raw, non-blocking, no bytes consumed past listener filters
    remote_address: tuple[str, int]  # the client's (rewritten by proxy_protocol if present)
    local_address: tuple[str, int]  # the destination (rewritten by proxy_protocol if present)
    listener_name: str
    connection_id: int
    server_name: str = ""  # SNI seen by tls_inspector
    application_protocols: tuple[str, ...] = ()  # ALPN offered, seen by tls_inspector
    transport_protocol: str = "raw_buffer"  # "tls" when tls_inspector saw a ClientHello
    # The chain's downstream TLS context (envoy.transport_sockets.tls), None for plain TCP.
    server_ssl: ssl.SSLContext | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # The listener's per_connection_buffer_limit_bytes (Envoy's default 1 MiB).
    buffer_limit: int = 1024 * 1024


class NetworkFilter(Protocol):
    async def on_new_connection(self, connection: DownstreamConnection) -> None:
        """Serve the connection until it ends; close `connection.sock` in `finally`."""


class DrainableNetworkFilter(NetworkFilter, Protocol):
    """Optional: a filter with `start_draining()` is told when its listener generation drains
    (listener updated or removed; Envoy doc intro/arch_overview/operations/draining), so it can
    end its connections gracefully (HTTP/1.1 `connection: close`, HTTP/2 GOAWAY). Connections
    still open after the drain time are cancelled either way."""

    def start_draining(self) -> None: ...


class NetworkFilterFactory(Protocol):
    # Full proto name of the typed_config this factory accepts.
    config_type: str

    def translate(self, message: Message) -> Any:
        """Proto -> frozen config, raising ConfigError naming the bad field."""

    def create(self, config: Any, context: ServerContext) -> NetworkFilter:
        """A filter instance for one filter chain (shared by its connections)."""


NETWORK_FILTERS: dict[str, NetworkFilterFactory] = {}


def register(factory: NetworkFilterFactory) -> NetworkFilterFactory:
    """Called by each filter's module: its translator goes to the model (listeners are
    translated with it), the factory stays here (listeners are built with it)."""
    NETWORK_FILTERS[factory.config_type] = factory
    register_network_filter(factory.config_type, factory.translate)
    return factory


def unregister(factory: NetworkFilterFactory) -> None:
    NETWORK_FILTERS.pop(factory.config_type, None)
    unregister_network_filter(factory.config_type)


def factory_for(type_name: str, name: str = "") -> NetworkFilterFactory:
    """The factory of a typed_config type; ConfigError naming the filter (its `name` and
    type) when we have none. The caller adds the field."""
    try:
        return NETWORK_FILTERS[type_name]
    except KeyError:
        described = f"{name!r} ({type_name})" if name else repr(type_name)
        raise ConfigError(f"network filter {described} is not supported by Pointsman") from None
