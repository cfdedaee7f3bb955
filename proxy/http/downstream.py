"""The asyncio adapter of one downstream HTTP connection: it picks the protocol and feeds it.

Thin by design: the protocol is known at `connection_made` (codec_type, or the ALPN TLS
negotiated) or, for codec_type AUTO over plaintext, from the first bytes (HTTP/2 prior
knowledge starts with the connection preface, RFC 9113 3.3). From then on a
`ServerConnection` (proxy.http.http1_server or proxy.http.http2_server) gets the bytes, the
peer's close and the transport's loss; it owns the streams, their tasks and the timers.
Before the first bytes the connection idles out, drains and closes as an HTTP/1.1 one would.
"""

from __future__ import annotations

import asyncio

from proxy.codec.flow import WriteFlow
from proxy.codec.http2 import PREFACE
from proxy.http.active_stream import ActiveStream
from proxy.http.http1_server import Http1ServerConnection
from proxy.http.http2_server import Http2ServerConnection
from proxy.http.manager import ConnectionInfo, HttpManager
from proxy.http.peer import PEER_KEY, peer_from_ssl
from proxy.http.server_connection import ServerConnection

_NO_STREAMS: dict[int, ActiveStream] = {}
_NO_TASKS: set[asyncio.Task[None]] = set()


class HttpConnectionHandler(asyncio.Protocol):
    def __init__(self, manager: HttpManager, info: ConnectionInfo) -> None:
        self.manager = manager
        self.info = info
        self.loop = asyncio.get_running_loop()
        self.flow = WriteFlow()
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.connection: ServerConnection | None = None
        self.transport: asyncio.Transport | None = None
        self._buffer = b""
        self._made = 0.0
        self._draining = False
        self._idle: asyncio.TimerHandle | None = None  # before the protocol is known

    @property
    def streams(self) -> dict[int, ActiveStream]:
        return self.connection.streams if self.connection is not None else _NO_STREAMS

    @property
    def tasks(self) -> set[asyncio.Task[None]]:
        return self.connection.tasks if self.connection is not None else _NO_TASKS

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._made = self.loop.time()
        ssl_object = transport.get_extra_info("ssl_object")
        negotiated = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if ssl_object is not None:  # RBAC's authenticated principal (proxy.http.peer)
            self.info.filter_state[PEER_KEY] = peer_from_ssl(ssl_object)
        codec_type = self.manager.settings.codec_type
        if codec_type == "HTTP2" or (codec_type == "AUTO" and negotiated == "h2"):
            self._start(Http2ServerConnection)
        elif codec_type == "HTTP1" or negotiated == "http/1.1":
            self._start(Http1ServerConnection)
        elif self.manager.settings.idle_timeout:
            self._idle = self.loop.call_later(self.manager.settings.idle_timeout,
                                              self._idle_before_bytes)

    def _start(self, kind: type[ServerConnection]) -> ServerConnection:
        """The protocol is known: its connection takes over, the idle timeout counted from
        the connection's start (request_headers_timeout from a first byte)."""
        assert self.transport is not None
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        connection = kind(self.manager, self.info, self.transport, self.loop, self.flow)
        self.connection = connection
        idle = self.manager.settings.idle_timeout
        if idle:
            connection.arm_idle_timer(max(idle - (self.loop.time() - self._made), 0.001))
        if self._draining:
            connection.start_draining()
        return connection

    def data_received(self, data: bytes) -> None:
        connection = self.connection
        if connection is None:
            self._buffer += data
            if len(self._buffer) < len(PREFACE) and PREFACE.startswith(self._buffer):
                return
            data, self._buffer = self._buffer, b""
            connection = self._start(Http2ServerConnection if data.startswith(PREFACE)
                                     else Http1ServerConnection)
        connection.receive(data)

    def eof_received(self) -> bool | None:
        if self.connection is not None:
            self.connection.peer_closed()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.flow.connection_lost()
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self.connection is not None:
            self.connection.lost()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self.flow.pause()

    def resume_writing(self) -> None:
        self.flow.resume()

    # --- the listener's calls ------------------------------------------------------------------

    def _idle_before_bytes(self) -> None:
        self._idle = None
        self._start(Http1ServerConnection).idle_timeout_now()

    def start_draining(self) -> None:
        """The listener drains: finish what is in flight, take nothing new."""
        if self.connection is None and self.transport is not None:
            self._draining = True
            self._start(Http1ServerConnection)  # drains as it starts
        elif self.connection is not None:
            self.connection.start_draining()

    def shutdown(self) -> None:
        """Stop everything now (the listener is closing or the handler exits)."""
        if self.connection is not None:
            self.connection.shutdown()
        elif self.transport is not None:
            self.transport.abort()

    def __repr__(self) -> str:
        if self.connection is not None:
            return repr(self.connection)
        remote = self.info.remote_address
        return f"HttpConnectionHandler(#{self.info.connection_id} undecided " \
               f"{remote[0]}:{remote[1]})"
