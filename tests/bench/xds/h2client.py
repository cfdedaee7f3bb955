"""A lean gRPC client for the simulated sidecars (`--client native`): one HTTP/2 connection
per sidecar over libnghttp2 (`ngh2`) on the generator's event loop, instead of grpcio.

Why: the generator shares the machine with the server it measures, and grpcio's receive path
(its threads, a copy per message) made it cost 1.8 times the server's CPU in the converge
(docs/benchmarks.md). It offers the little of grpc.aio's API the sidecars use: a channel whose
`stream_stream(method, ...)()` gives a call with `write(bytes)` and `read()` (bytes, then
`grpc.aio.EOF`); a call that ends with a non-OK status, a reset or a lost connection raises
`CallFailed`, which the sidecars count like grpcio's AioRpcError.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import grpc
import ngh2

from controlplane.transport.grpc_messages import prefix

_WINDOW = 256 * 1024 * 1024  # what Envoy advertises for its xDS gRPC streams
_END = object()


class CallFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Call:
    def __init__(self, channel: NativeChannel, stream_id: int) -> None:
        self.channel = channel
        self.stream_id = stream_id
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.chunks: list[bytes] = []
        self.held = 0  # bytes in chunks
        self.needed = -1  # the current message's length, once its prefix is read

    async def write(self, message: bytes) -> None:
        self.channel.send(self.stream_id, prefix(len(message)) + message)

    async def read(self) -> Any:
        item = await self.inbox.get()
        if isinstance(item, CallFailed):
            raise item
        return grpc.aio.EOF if item is _END else item

    def received(self, data: bytes) -> None:
        """DATA frames to messages: each message joined once from its chunks (no growing
        buffer copied again at every frame)."""
        self.chunks.append(data)
        self.held += len(data)
        while True:
            if self.needed < 0:  # the 5-byte prefix is not read yet
                if self.held < 5:
                    return
                head = b"".join(self.chunks)
                self.needed = int.from_bytes(head[1:5], "big")
                self.chunks, self.held = [head[5:]], self.held - 5
            if self.held < self.needed:
                return
            joined = b"".join(self.chunks) if len(self.chunks) > 1 else self.chunks[0]
            message, rest = joined[:self.needed], joined[self.needed:]
            self.inbox.put_nowait(message)
            self.chunks, self.held, self.needed = ([rest] if rest else []), len(rest), -1


class NativeChannel(asyncio.Protocol):
    """One connection to `target` (HOST:PORT), opened on `__aenter__`."""

    def __init__(self, target: str) -> None:
        self.host, _, port = target.rpartition(":")
        self.port = int(port)
        self.conn = ngh2.Connection(ngh2.Role.CLIENT, ngh2.Configuration())
        self.transport: asyncio.Transport | None = None
        self.calls: dict[int, _Call] = {}

    async def __aenter__(self) -> NativeChannel:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: self, self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.conn.initiate_connection({int(ngh2.Setting.INITIAL_WINDOW_SIZE): _WINDOW,
                                       int(ngh2.Setting.ENABLE_PUSH): 0})
        self.conn.set_local_window_size(_WINDOW)
        self.flush()

    def stream_stream(self, method: str, **_serialisers: Any) -> Any:
        def start() -> _Call:
            if self.transport is None or self.transport.is_closing():
                raise CallFailed("UNAVAILABLE: not connected")
            stream_id = self.conn.send_request([
                (b":method", b"POST"), (b":scheme", b"http"), (b":path", method.encode()),
                (b":authority", f"{self.host}:{self.port}".encode()),
                (b"content-type", b"application/grpc"), (b"te", b"trailers")])
            call = self.calls[stream_id] = _Call(self, stream_id)
            self.flush()
            return call
        return start

    def send(self, stream_id: int, data: bytes) -> None:
        self.conn.send_data(stream_id, data)
        self.flush()

    def flush(self) -> None:
        if self.transport is not None:
            data = self.conn.data_to_send()
            if data:
                self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            self.conn.receive_data(data)
        except ngh2.NGH2Error as error:
            self._fail_all(f"INTERNAL: {error}")
            return
        for event in self.conn.events():
            call = self.calls.get(getattr(event, "stream_id", 0))
            if isinstance(event, ngh2.DataReceived):
                if call is not None:
                    call.received(event.data)
            elif isinstance(event, ngh2.ResponseReceived | ngh2.TrailersReceived):
                if call is not None:
                    status = dict(event.headers).get(b"grpc-status")
                    if status is not None:
                        self.calls.pop(call.stream_id, None)
                        call.inbox.put_nowait(_END if status == b"0" else CallFailed(
                            f"status {status.decode()}: "
                            f"{dict(event.headers).get(b'grpc-message', b'').decode()}"))
            elif isinstance(event, ngh2.StreamReset):
                if call is not None:
                    self.calls.pop(call.stream_id, None)
                    call.inbox.put_nowait(CallFailed(f"reset {event.error_code}"))
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_all("UNAVAILABLE: connection lost")

    def _fail_all(self, reason: str) -> None:
        for call in self.calls.values():
            call.inbox.put_nowait(CallFailed(reason))
        self.calls.clear()
        if self.transport is not None:
            self.transport.close()
