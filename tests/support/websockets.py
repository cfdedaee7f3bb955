"""WebSocket tunnels for tests: an RFC 8441 client (extended CONNECT over h2c, with the `h2`
package) and an HTTP/1.1 Upgrade echo backend (asyncio streams). Both are independent of the
sidecar's codecs.

The tests move opaque bytes (WebSocket framing is the endpoints' business; Envoy and the
sidecar only relay the stream), so neither side speaks RFC 6455 framing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from tests.support.tcp_servers import port_of, start_server, stop_servers


@dataclass
class TunnelEnd:
    """How the tunnel stream ended, as the client saw it."""

    end_stream: bool = False  # DATA/HEADERS with END_STREAM
    reset_code: int | None = None  # RST_STREAM error code
    connection_closed: bool = False
    error: str = ""  # what the client's own h2 checks refused, if anything
    goaway: tuple[int, int] | None = None  # (error code, last stream id) of a GOAWAY


class H2WebSocketClient:
    """One h2c connection carrying one extended CONNECT stream (RFC 8441 section 4)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="latin-1"))
        self.stream_id = 0
        self.connect_enabled = asyncio.Event()
        self.settings_seen = asyncio.Event()
        self.events: asyncio.Queue[h2.events.Event | None] = asyncio.Queue()
        self.received = bytearray()
        self.end = TunnelEnd()
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._data = asyncio.Event()

    async def __aenter__(self) -> H2WebSocketClient:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.conn.initiate_connection()
        self._flush()
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._writer is not None:
            self._writer.close()

    def _flush(self) -> None:
        assert self._writer is not None
        data = self.conn.data_to_send()
        if data:
            self._writer.write(data)

    async def _read(self) -> None:
        assert self._reader is not None
        pending = b""
        try:
            while data := await self._reader.read(65536):
                pending += data
                # Frame by frame, so that a GOAWAY is seen before the frames that follow it
                # (h2 refuses those unless told the GOAWAY was graceful).
                while len(pending) >= 9 and len(pending) >= 9 + int.from_bytes(pending[:3]):
                    size = 9 + int.from_bytes(pending[:3])
                    frame, pending = pending[:size], pending[size:]
                    for event in self.conn.receive_data(frame):
                        self._on_event(event)
                self._flush()
        except (ConnectionError, h2.exceptions.ProtocolError) as error:
            self.end.error = repr(error)
        self.end.connection_closed = True
        self._data.set()
        self.settings_seen.set()

    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ConnectionTerminated):
            self.end.goaway = (int(event.error_code or 0), int(event.last_stream_id or 0))
            if not event.error_code:  # graceful: the streams in flight still finish
                self.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        if isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings_seen.set()
            if self.conn.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL):
                self.connect_enabled.set()
        stream_id = getattr(event, "stream_id", None)
        if stream_id != self.stream_id or not stream_id:
            return
        if isinstance(event, h2.events.ResponseReceived):
            self.headers = [(n, v) for n, v in event.headers]
            self.status = int(dict(self.headers)[":status"])
        elif isinstance(event, h2.events.DataReceived):
            self.received += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self.end.reset_code = int(event.error_code)
        if isinstance(event, h2.events.StreamEnded) or getattr(event, "stream_ended", None):
            self.end.end_stream = True
        self._data.set()

    async def open(self, path: str = "/chat", authority: str = "example.com",
                   headers: list[tuple[str, str]] | None = None) -> int:
        """Send the extended CONNECT once the server allowed it; return the response status
        (0 when the stream or connection ended without one)."""
        await self.settings_seen.wait()
        if not self.connect_enabled.is_set():
            raise RuntimeError("the server did not send SETTINGS_ENABLE_CONNECT_PROTOCOL=1")
        self.stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(self.stream_id, [
            (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
            (":path", path), (":authority", authority), ("sec-websocket-version", "13"),
            *(headers or [])])
        self._flush()
        while not self.status and not self._ended():
            await self._wait_data()
        return self.status

    def _ended(self) -> bool:
        return self.end.end_stream or self.end.reset_code is not None \
            or self.end.connection_closed

    async def _wait_data(self) -> None:
        self._data.clear()
        await self._data.wait()

    def send(self, data: bytes, *, end_stream: bool = False) -> None:
        """Queue `data` in frames of the peer's maximum size (tests stay within the window:
        both proxies advertise megabytes)."""
        size = self.conn.max_outbound_frame_size
        for offset in range(0, len(data), size):
            last = offset + size >= len(data)
            self.conn.send_data(self.stream_id, data[offset:offset + size],
                                end_stream=end_stream and last)
        self._flush()

    def close_stream(self) -> None:
        self.conn.end_stream(self.stream_id)
        self._flush()

    async def receive(self, size: int) -> bytes:
        """The next `size` bytes of the tunnel (fewer if it ended first)."""
        while len(self.received) < size and not self._ended():
            await self._wait_data()
        data = bytes(self.received[:size])
        del self.received[:size]
        return data

    async def ended(self) -> TunnelEnd:
        while not self._ended():
            await self._wait_data()
        return self.end

    async def reset_after_end(self, wait: float = 1.0) -> TunnelEnd:
        """After the response ended: up to `wait` seconds for the RST_STREAM a server may add
        while our side is still open (RFC 9113 8.1)."""
        await self.ended()
        try:
            async with asyncio.timeout(wait):
                while self.end.reset_code is None and not self.end.connection_closed:
                    await self._wait_data()
        except TimeoutError:
            pass
        return self.end


@dataclass
class _EchoServer:
    """The lifecycle both echo backends share: a loopback server, its open connections
    aborted on close. Subclasses implement `_serve`."""

    server: asyncio.Server | None = None
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> int:
        self.server = await start_server(self._serve)
        return port_of(self.server)

    async def close(self) -> None:
        for writer in list(self.writers):
            writer.transport.abort()
        if self.server is not None:
            await stop_servers(self.server)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


@dataclass
class UpgradeEchoBackend(_EchoServer):
    """HTTP/1.1: answers an `Upgrade: websocket` request with 101 and echoes the bytes that
    follow; a tunnel that receives b"bye" closes after echoing it. `heads` keeps each request
    head as received (lower-cased)."""

    heads: list[bytes] = field(default_factory=list)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head.lower())
            if b"\r\nupgrade: websocket" not in head.lower():
                writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                return
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\n\r\n")
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
                if data.endswith(b"bye"):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()


@dataclass
class H2ConnectEchoBackend(_EchoServer):
    """h2c with SETTINGS_ENABLE_CONNECT_PROTOCOL=1: answers an extended CONNECT
    (`:protocol websocket`) with 200 and echoes its DATA; b"bye" or the client's END_STREAM
    ends the stream from our side. `requests` keeps each request's header list."""

    requests: list[list[tuple[str, str]]] = field(default_factory=list)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="latin-1"))
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
        writer.write(conn.data_to_send())
        ended: set[int] = set()
        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    self._on_event(conn, event, ended)
                writer.write(conn.data_to_send())
        except (ConnectionError, h2.exceptions.ProtocolError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    def _on_event(self, conn: h2.connection.H2Connection, event: h2.events.Event,
                  ended: set[int]) -> None:
        if isinstance(event, h2.events.RequestReceived):
            headers = [(n, v) for n, v in event.headers]
            self.requests.append(headers)
            found = dict(headers)
            if (found.get(":method"), found.get(":protocol")) == ("CONNECT", "websocket"):
                conn.send_headers(event.stream_id, [(":status", "200")])
            else:
                conn.send_headers(event.stream_id, [(":status", "400")], end_stream=True)
                ended.add(event.stream_id)
        elif isinstance(event, h2.events.DataReceived) and event.stream_id not in ended:
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            size = conn.max_outbound_frame_size
            for offset in range(0, len(event.data), size):
                conn.send_data(event.stream_id, event.data[offset:offset + size])
            if event.data.endswith(b"bye"):
                conn.end_stream(event.stream_id)
                ended.add(event.stream_id)
        elif isinstance(event, h2.events.StreamEnded) and event.stream_id not in ended:
            conn.end_stream(event.stream_id)
            ended.add(event.stream_id)
