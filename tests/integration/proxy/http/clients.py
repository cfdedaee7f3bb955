"""Minimal asyncio HTTP clients for tests, built on h11 and h2 (not on the sidecar's codecs)."""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h11


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n == name), None)

    def header_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name]

    def json(self) -> Any:
        return json.loads(self.body)

    def upstream_header(self, name: str) -> str | None:
        """A request header as the backend saw it (from the echo body)."""
        return next((v for n, v in self.json()["headers"] if n == name), None)


class H1Client:
    def __init__(self, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.ssl_context = ssl_context
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.connection = h11.Connection(h11.CLIENT)

    async def __aenter__(self) -> H1Client:
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", self.port, ssl=self.ssl_context,
            server_hostname="localhost" if self.ssl_context else None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()

    async def request(self, method: str, path: str, *, host: str = "example.com",
                      headers: list[tuple[str, str]] | None = None,
                      body: bytes = b"") -> Response:
        assert self.writer is not None and self.reader is not None
        if self.connection.our_state is h11.DONE:
            self.connection.start_next_cycle()
        all_headers = [("host", host), *(headers or [])]
        if body:
            all_headers.append(("content-length", str(len(body))))
        self.writer.write(self.connection.send(h11.Request(method=method, target=path,
                                                           headers=all_headers)))
        if body:
            self.writer.write(self.connection.send(h11.Data(data=body)))
        self.writer.write(self.connection.send(h11.EndOfMessage()))
        await self.writer.drain()
        status, response_headers, chunks = 0, [], bytearray()
        while True:
            event = self.connection.next_event()
            if event is h11.NEED_DATA:
                self.connection.receive_data(await self.reader.read(65536))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                response_headers = [(n.decode(), v.decode("latin-1")) for n, v in event.headers]
            elif isinstance(event, h11.Data):
                chunks += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return Response(status, response_headers, bytes(chunks))

    @property
    def reusable(self) -> bool:
        return self.connection.our_state is h11.DONE and self.connection.their_state is h11.DONE


async def raw_exchange(port: int, data: bytes, wait: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes (or `wait` passes); returns what came."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        received = bytearray()
        async with asyncio.timeout(wait):
            while chunk := await reader.read(65536):
                received += chunk
        return bytes(received)
    finally:
        writer.close()


class H2Client:
    """One h2c connection (prior knowledge); `request` may be called concurrently."""

    def __init__(self, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.ssl_context = ssl_context
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="latin-1"))
        self.streams: dict[int, asyncio.Queue[Any]] = {}
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.window = asyncio.Event()

    async def __aenter__(self) -> H2Client:
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", self.port, ssl=self.ssl_context,
            server_hostname="localhost" if self.ssl_context else None)
        self.conn.initiate_connection()
        self.writer.write(self.conn.data_to_send())
        self.task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.writer is not None:
            self.writer.close()

    async def _read(self) -> None:
        assert self.reader is not None and self.writer is not None
        while data := await self.reader.read(65536):
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.ConnectionTerminated):
                    self.goaway = event
                    if not event.error_code:  # graceful: let streams in flight finish
                        self.conn.state_machine.state = \
                            h2.connection.ConnectionState.CLIENT_OPEN
                if isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
                    self.window.set()
                stream_id = getattr(event, "stream_id", None)
                if isinstance(event, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                        event.stream_id)
                if stream_id in self.streams:
                    self.streams[stream_id].put_nowait(event)
            self.writer.write(self.conn.data_to_send())
        for queue in self.streams.values():
            queue.put_nowait(None)

    async def _send_body(self, stream_id: int, body: bytes, *, end_stream: bool) -> None:
        assert self.writer is not None
        while body:
            allowed = min(self.conn.local_flow_control_window(stream_id),
                          self.conn.max_outbound_frame_size)
            if allowed <= 0:
                self.window.clear()
                await self.window.wait()
                continue
            chunk, body = body[:allowed], body[allowed:]
            self.conn.send_data(stream_id, chunk, end_stream=end_stream and not body)
            self.writer.write(self.conn.data_to_send())

    async def request(self, method: str, path: str, *, authority: str = "example.com",
                      headers: list[tuple[str, str]] | None = None, body: bytes = b"",
                      trailers: list[tuple[str, str]] | None = None) -> Response:
        assert self.writer is not None
        stream_id = self.conn.get_next_available_stream_id()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self.streams[stream_id] = queue
        block = [(":method", method), (":scheme", "http"), (":authority", authority),
                 (":path", path), *(headers or [])]
        self.conn.send_headers(stream_id, block, end_stream=not body and not trailers)
        if body:
            await self._send_body(stream_id, body, end_stream=not trailers)
        if trailers:
            self.conn.send_headers(stream_id, trailers, end_stream=True)
        self.writer.write(self.conn.data_to_send())
        status, response_headers, chunks, response_trailers = 0, [], bytearray(), []
        while True:
            event = await queue.get()
            if event is None:
                raise ConnectionError("connection closed")
            if isinstance(event, h2.events.ResponseReceived):
                response_headers = [(n, v) for n, v in event.headers]
                status = int(dict(response_headers)[":status"])
            elif isinstance(event, h2.events.DataReceived):
                chunks += event.data
            elif isinstance(event, h2.events.TrailersReceived):
                response_trailers = list(event.headers)
            elif isinstance(event, h2.events.StreamReset):
                raise ConnectionResetError(f"stream reset {event.error_code}")
            if isinstance(event, h2.events.StreamEnded) or getattr(event, "stream_ended", None):
                del self.streams[stream_id]
                return Response(status, response_headers, bytes(chunks), response_trailers)
