"""The network-filter interface and its registry (Envoy `envoy/network/filter.h`, simplified).

A listener accepts a socket, runs listener filters (which only peek or consume exactly their
own bytes), picks a filter chain, and hands a `DownstreamConnection` to the chain's terminal
network filter. The filter owns the socket from then on and must close it in `finally`.

A chain may also hold non-terminal filters before the terminal one (Envoy's
Network::ReadFilter, e.g. `envoy.filters.network.rbac`): each sees every read from the
downstream (and its end) before the terminal filter does, and may close the connection
(proxy.network.read_filters runs them).

Factories are registered by the full protobuf name of their `typed_config` (Envoy resolves
extensions by type URL; the `name` field is informational). Each factory translates its proto
once, at config time, into a frozen config object, and creates filter instances from it.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from google.protobuf.message import Message

from protos.errors import ConfigError
from proxy.model.extensions import (
    register_network_filter,
    register_read_filter,
    unregister_network_filter,
    unregister_read_filter,
)

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
    # The chain's read filters, one instance each for this connection, in chain order.
    read_filters: tuple[ReadFilter, ...] = ()
    # The socket's peer before the PROXY protocol rewrote remote_address (RBAC's
    # direct_remote_ip); None: the same as remote_address.
    direct_remote_address: tuple[str, int] | None = None
    # Set once TLS is up (proxy.http.peer.PeerTls), for the read filters; None without TLS.
    peer: Any = None
    # Why a filter closed the connection (Envoy's %CONNECTION_TERMINATION_DETAILS%).
    termination_details: str = ""
    # Bytes read from the downstream that a read filter kept from the terminal filter (the
    # read that made it close the connection): still counted as received, as Envoy does.
    withheld_bytes: int = 0


class NetworkFilter(Protocol):
    async def on_new_connection(self, connection: DownstreamConnection) -> None:
        """Serve the connection until it ends; close `connection.sock` in `finally`."""


class ReadFilter(Protocol):
    """One connection's non-terminal network filter (Envoy `Network::ReadFilter::onData`)."""

    def on_data(self, connection: DownstreamConnection, size: int, end_stream: bool) -> bool:
        """Before the terminal filter sees a read of `size` bytes (`end_stream`: the
        downstream's FIN). False: stop, the connection is to be closed without flushing
        (Envoy's close(NoFlush) and StopIteration); the filter set termination_details."""


class ReadFilterFactory(Protocol):
    # Full proto name of the typed_config this factory accepts.
    config_type: str

    def translate(self, message: Message) -> Any:
        """Proto -> frozen config, raising ConfigError naming the bad field."""

    def create(self, config: Any, context: ServerContext) -> Callable[[], ReadFilter]:
        """For one filter chain: makes the filter instance of each new connection."""


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


READ_FILTERS: dict[str, ReadFilterFactory] = {}


def register_read(factory: ReadFilterFactory) -> ReadFilterFactory:
    """As `register`, for a non-terminal (read) filter."""
    READ_FILTERS[factory.config_type] = factory
    register_read_filter(factory.config_type, factory.translate)
    return factory


def unregister_read(factory: ReadFilterFactory) -> None:
    READ_FILTERS.pop(factory.config_type, None)
    unregister_read_filter(factory.config_type)


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
