"""A filter chain without network filters (`filters: []`).

Envoy accepts such a chain and closes each connection it selects at once, without a TLS
handshake and without reading (source/common/listener_manager/active_stream_listener_base.cc:
"closing connection from {}: no filters", ConnectionCloseType::NoFlush); the listener still
counts the connection (downstream_cx_total, downstream_cx_destroy).
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from proxy.context import ServerContext
from proxy.network.base import DownstreamConnection, NetworkFilter


class _CloseAtOnce:
    async def on_new_connection(self, connection: DownstreamConnection) -> None:
        connection.sock.close()


class NoFiltersFactory:
    """Not registered by a type: proxy.model.listener uses it for a chain without filters."""

    config_type = ""

    def translate(self, message: Message) -> None:
        return None

    def create(self, config: Any, context: ServerContext) -> NetworkFilter:
        return _CloseAtOnce()


NO_FILTERS = NoFiltersFactory()
