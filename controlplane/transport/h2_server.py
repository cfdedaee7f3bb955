"""The native xDS transport: gRPC calls served over our own HTTP/2 (libnghttp2 through
`ngh2`, the codec of the sidecar's own HTTP/2) on the event loop, instead of grpcio.

Why: grpcio hands every message between the event loop and its own threads (the completion
queue, the event engine), some 100 context switches per simulated sidecar in the converge of
docs/benchmarks.md, and copies each response into its own buffers; here a call is a
coroutine on the loop, a response goes from the shared bytes into libnghttp2's frames and the
socket, and the loop thread does all of it.

What it serves is what grpcio served: unary and bidirectional-streaming methods, by path
(`/package.Service/Method`), with the behaviours `DiscoveryServer` registers for grpcio; a
`ServerCall` gives them the part of `grpc.aio.ServicerContext` they use. The rules followed are
gRPC's PROTOCOL-HTTP2.md: requests are POST with a content type of application/grpc (else
HTTP 405 / 415), responses are :status 200, the messages, then trailers with grpc-status
(and grpc-message); an unknown method is a Trailers-Only response with UNIMPLEMENTED; a
client's RST_STREAM cancels the call; `grpc-timeout` ends it with DEADLINE_EXCEEDED. TLS is
not served here (grpcio serves `--tls` and `--tls-cert`).
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc
import ngh2

from controlplane import logs
from controlplane.transport.grpc_messages import (
    DEADLINE_EXCEEDED,
    INTERNAL,
    OK,
    UNIMPLEMENTED,
    UNKNOWN,
    FramingError,
    MessageReader,
    parse_timeout,
    prefix,
    status_headers,
)

# What we advertise (RFC 9113 6.5.2). Requests are small; one window of 1 MiB per stream and
# 16 of them for the connection, as the sidecar's codec (proxy/codec/http2.py).
_STREAM_WINDOW = 1024 * 1024
_SETTINGS = {
    int(ngh2.Setting.MAX_CONCURRENT_STREAMS): 1024,
    int(ngh2.Setting.INITIAL_WINDOW_SIZE): _STREAM_WINDOW,
    int(ngh2.Setting.MAX_HEADER_LIST_SIZE): 16 * 1024,
}
_CONNECTION_WINDOW = 16 * _STREAM_WINDOW
# Bytes taken from libnghttp2 per socket write (see H2Connection.flush).
_CHUNK = 64 * 1024
# grpcio's defaults for the server side of keepalive (SERVER_OPTIONS in controlplane/main.py):
# a PING after 60 s without one, the connection closed when its ACK is not back in 20 s.
KEEPALIVE_TIME = 60.0
KEEPALIVE_TIMEOUT = 20.0

# How long a write may hold the byte budget while the peer does not take the message.
DRAIN_GRACE = 10.0

_RESPONSE_HEADERS = ((b":status", b"200"), (b"content-type", b"application/grpc"))
_RESERVED_METADATA = frozenset({"content-type", "te", "grpc-timeout", "grpc-encoding",
                                "grpc-accept-encoding", "user-agent"})
_END = object()


@dataclass(frozen=True, slots=True)
class Method:
    """One gRPC method: `behaviour(request_iterator_or_request, call)` as grpcio's handlers
    take it; `streaming` is bidirectional streaming, else unary-unary."""

    behaviour: Callable[[Any, Any], Awaitable[Any]]
    deserialize: Callable[[bytes], Any]
    streaming: bool
    serialize: Callable[[Any], bytes] = bytes  # responses: DiscoveryServer's are bytes already


def grpcio_handler(method: Method) -> grpc.RpcMethodHandler:
    """The same method for a grpcio server (TLS, `--xds-transport grpcio`)."""
    if method.streaming:
        return grpc.stream_stream_rpc_method_handler(
            method.behaviour, request_deserializer=method.deserialize,
            response_serializer=method.serialize)
    return grpc.unary_unary_rpc_method_handler(
        method.behaviour, request_deserializer=method.deserialize,
        response_serializer=method.serialize)


def grpcio_handlers(methods: dict[str, Method]) -> list[grpc.GenericRpcHandler]:
    """`methods` by path (`/package.Service/Method`) as grpcio's generic handlers, one per
    service."""
    services: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
    for path, method in methods.items():
        service, name = path.lstrip("/").split("/", 1)
        services.setdefault(service, {})[name] = grpcio_handler(method)
    return [grpc.method_handlers_generic_handler(service, handlers)
            for service, handlers in services.items()]


class AbortError(Exception):
    """`ServerCall.abort`: ends the call with this status (grpc.aio.AbortError's role)."""

    def __init__(self, status: int, details: str) -> None:
        super().__init__(details)
        self.status = status
        self.details = details


@dataclass(frozen=True, slots=True)
class _Received:
    value: Any
    size: int  # on the wire, prefix included


class ServerCall:
    """The `grpc.aio.ServicerContext` of one call: read, write, abort, peer, metadata."""

    def __init__(self, connection: H2Connection, stream_id: int, method: Method,
                 metadata: tuple[tuple[str, str], ...], limit: int) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self.method = method
        self.metadata = metadata
        self.reader = MessageReader(limit)
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.headers_sent = False
        self.closed = False  # the stream is gone (reset, or the connection lost)
        self.task: asyncio.Task[None] | None = None
        self.deadline: asyncio.TimerHandle | None = None
        # The status the transport ended the call with (a deadline, a request that does not
        # parse); the method is cancelled and nothing more is read.
        self.ended_with: tuple[int, str] | None = None
        self.stalled = 0  # writes that returned before the peer took them (drain_grace)
        self.unacked = 0  # received bytes not yet given back to the client's window

    async def read(self) -> Any:
        """The next request (grpc.aio.EOF at the end). Its bytes go back to the client's
        flow-control window only now: a client cannot queue more unread requests than its
        window (1 MiB per stream, 16 MiB per connection)."""
        item = await self.inbox.get()
        if item is _END:
            self.inbox.put_nowait(_END)  # every later read sees the end too
            return grpc.aio.EOF
        self.connection.acknowledge(self, item.size)
        return item.value

    async def write(self, body: bytes) -> None:
        await self.connection.send_message(self, (body,))

    async def write_parts(self, parts: Sequence[bytes]) -> None:
        """One message given in pieces: they go to libnghttp2 as they are (it holds
        references and cuts frames across them), so a response made of shared chunks is
        never joined into one buffer (controlplane/cache/encoder.py `parts`)."""
        await self.connection.send_message(self, parts)

    async def ready_to_write(self) -> None:
        """Until the earlier messages of this call have left (see `send_message`)."""
        await self.connection.ready(self)

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise AbortError(code.value[0], details)

    def peer(self) -> str:
        return self.connection.peer

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}  # plaintext: no peer identity (grpcio answers the same without TLS)

    def received(self, data: bytes, end_stream: bool) -> None:
        self.unacked += len(data)
        if self.ended_with is not None:
            return  # the call is ending; its bytes go back then
        try:
            for message in self.reader.feed(data):
                self.inbox.put_nowait(_Received(self.method.deserialize(message),
                                                len(message) + 5))
        except FramingError as error:
            self.end(error.status, str(error))
            return
        except Exception as error:  # the deserialiser refused the bytes, as grpcio: INTERNAL
            self.end(INTERNAL, f"cannot parse the request: {error}")
            return
        if end_stream:
            if self.reader.partial:
                self.end(INTERNAL, "the request ended mid-message")
                return
            self.inbox.put_nowait(_END)

    def end(self, status: int, details: str) -> None:
        """End the call with `status` whatever its method is doing: the method is cancelled
        (on the loop's next turn, so that a task not started yet starts first and answers)."""
        if self.ended_with is None:
            self.ended_with = (status, details)
            asyncio.get_running_loop().call_soon(self._cancel_method)

    def _cancel_method(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def cancel(self) -> None:
        self.closed = True
        if self.deadline is not None:
            self.deadline.cancel()
        if self.task is not None:
            self.task.cancel()


class H2Connection(asyncio.Protocol):
    """One client connection: libnghttp2's server session, its calls, flow control."""

    def __init__(self, server: H2Server) -> None:
        self.server = server
        self.conn = ngh2.Connection(ngh2.Role.SERVER, ngh2.Configuration(
            auto_window_update=False, max_inbound_header_list_size=16 * 1024))
        self.transport: asyncio.Transport | None = None
        self.peer = "unknown"
        self.calls: dict[int, ServerCall] = {}
        self.paused = False
        self.lost = False
        self.writable = asyncio.Event()
        self.keepalive: asyncio.TimerHandle | None = None
        self.ping_outstanding = False
        self.goaway_received = False

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.peer = _peer(self.transport.get_extra_info("peername"))
        self.server.connections.add(self)
        self.conn.initiate_connection(_SETTINGS)
        self.conn.set_local_window_size(_CONNECTION_WINDOW)
        self.flush()
        self._arm_keepalive()

    def data_received(self, data: bytes) -> None:
        try:
            self.conn.receive_data(data)
        except ngh2.NGH2Error:
            # libnghttp2 queued the GOAWAY naming the error when it could (RFC 9113 5.4.1);
            # after a fatal one (no client preface, RFC 9113 3.4) nothing can be sent.
            self.flush()
            self.close()
            return
        for event in self.conn.events():
            self._on_event(event)
        self.flush()

    def eof_received(self) -> bool:
        return False  # the peer is done: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.server.connections.discard(self)
        if self.keepalive is not None:
            self.keepalive.cancel()
        for call in list(self.calls.values()):
            call.cancel()
        self.calls.clear()
        self.writable.set()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.flush()
        self.writable.set()

    # --- events ----------------------------------------------------------------------------

    def _on_event(self, event: ngh2.Event) -> None:
        if isinstance(event, ngh2.DataReceived):
            call = self.calls.get(event.stream_id)
            if call is not None:
                call.received(event.data, event.end_stream)
            elif event.data:  # no call reads it: the connection's window gets it back now
                self._give_back(event.stream_id, len(event.data))
        elif isinstance(event, ngh2.RequestReceived):
            self._start(event.stream_id, event.headers, event.end_stream)
        elif isinstance(event, ngh2.WindowUpdated):
            self.writable.set()
        elif isinstance(event, ngh2.StreamReset | ngh2.StreamClosed):
            call = self.calls.pop(event.stream_id, None)
            if call is not None:
                self._release(call)
                if not call.closed:
                    call.cancel()  # RST_STREAM from the client: gRPC cancels the call
            self.writable.set()
            self._close_when_idle()
        elif isinstance(event, ngh2.PingAcknowledged):
            self.ping_outstanding = False
        elif isinstance(event, ngh2.TrailersReceived):
            call = self.calls.get(event.stream_id)
            if call is not None:
                call.received(b"", True)
        elif isinstance(event, ngh2.GoAwayReceived):
            # The client will open no new stream (RFC 9113 6.8): close once its calls end.
            self.goaway_received = True
            self._close_when_idle()
        elif isinstance(event, ngh2.ConnectionClosed):
            self.close()

    def _close_when_idle(self) -> None:
        if self.goaway_received and not self.calls:
            self.flush()
            self.close()

    def _start(self, stream_id: int, raw: tuple[ngh2.Header, ...], end_stream: bool) -> None:
        method_name = path = content_type = ""
        metadata: list[tuple[str, str]] = []
        timeout: float | None = None
        for raw_name, raw_value in raw:
            name = raw_name.decode("latin-1")
            value = raw_value.decode("latin-1")
            if name == ":method":
                method_name = value
            elif name == ":path":
                path = value
            elif name == "content-type":
                content_type = value
            elif name == "grpc-timeout":
                timeout = parse_timeout(value)
            if name[:1] != ":" and name not in _RESERVED_METADATA:
                metadata.append((name, value))
        # PROTOCOL-HTTP2.md: a gRPC request is a POST of application/grpc[+proto|...].
        if method_name != "POST":
            self._refuse(stream_id, b"405")
            return
        if not content_type.startswith("application/grpc"):
            self._refuse(stream_id, b"415")
            return
        method = self.server.methods.get(path)
        if method is None:
            self._trailers_only(stream_id, UNIMPLEMENTED, f"Method not found: {path}")
            return
        call = ServerCall(self, stream_id, method, tuple(metadata), self.server.max_message)
        self.calls[stream_id] = call
        if timeout is not None:
            call.deadline = asyncio.get_running_loop().call_later(
                timeout, call.end, DEADLINE_EXCEEDED, "Deadline Exceeded")
        call.task = self.server.spawn(self._run(call))
        if end_stream:
            call.received(b"", True)

    async def _run(self, call: ServerCall) -> None:
        status, details = OK, ""
        try:
            if call.method.streaming:
                await call.method.behaviour(None, call)
            else:
                request = await call.read()
                if request is grpc.aio.EOF:
                    raise AbortError(INTERNAL, "the request has no message")
                response = await call.method.behaviour(request, call)
                await call.write(call.method.serialize(response))
        except AbortError as error:
            status, details = error.status, error.details
        except asyncio.CancelledError:
            if call.ended_with is None or call.closed:
                return  # the client went away (or the server stops): nothing to answer
            status, details = call.ended_with
        except Exception as error:  # grpcio answers UNKNOWN "Exception calling application"
            logs.event("xds_call_failed", logging.ERROR, peer=self.peer, error=repr(error),
                       traceback=traceback.format_exc())
            status, details = UNKNOWN, "Exception calling application"
        finally:
            if call.deadline is not None:
                call.deadline.cancel()
        self._finish(call, status, details)

    # --- sending ---------------------------------------------------------------------------

    async def send_message(self, call: ServerCall, parts: Sequence[bytes]) -> None:
        """Queue one message and wait until it has left for the socket (the peer's
        flow-control window took it and the transport's buffer is below its high-water mark):
        the caller's byte budget (controlplane/fanout.py) counts until then. A peer that does
        not take it within `drain_grace` (a closed window, a socket it does not read) keeps
        the message queued but no longer holds the budget: the write returns, and the call's
        next write waits in `ready_to_write`, before any budget is taken, so a stalled client
        holds one response and nothing the other streams need."""
        await self.ready(call)
        conn = self.conn
        stream_id = call.stream_id
        if not call.headers_sent:
            conn.send_response(stream_id, _RESPONSE_HEADERS)
            call.headers_sent = True
        conn.send_data(stream_id, prefix(sum(len(part) for part in parts)))
        for part in parts:
            if part:
                conn.send_data(stream_id, part)
        self.flush()
        if self._pending(call):
            try:
                await asyncio.wait_for(self.ready(call), self.server.drain_grace)
            except TimeoutError:
                call.stalled += 1

    def _pending(self, call: ServerCall) -> bool:
        return self.paused or self.conn.queued_body_size(call.stream_id) > 0

    async def ready(self, call: ServerCall) -> None:
        """Until this call's queued messages have left for the socket."""
        while True:
            if call.closed or self.lost:
                raise asyncio.CancelledError
            if not self._pending(call):
                return
            self.writable.clear()
            await self.writable.wait()
            self.flush()

    def _finish(self, call: ServerCall, status: int, details: str) -> None:
        self.calls.pop(call.stream_id, None)
        self._release(call)
        if call.closed or self.lost:
            return
        trailers = status_headers(status, details)
        if call.headers_sent:
            self.conn.send_trailers(call.stream_id, trailers)
        else:
            self.conn.send_response(call.stream_id, [*_RESPONSE_HEADERS, *trailers],
                                    end_stream=True)
        call.closed = True
        self.flush()
        self._close_when_idle()

    def acknowledge(self, call: ServerCall, size: int) -> None:
        """A request was read: its bytes go back to the client's windows."""
        call.unacked -= size
        self._give_back(call.stream_id, size)
        self.flush()

    def _release(self, call: ServerCall) -> None:
        """The call ends: what it received and never read goes back too (the connection's
        window counts it whatever became of the stream)."""
        if call.unacked > 0:
            self._give_back(call.stream_id, call.unacked)
            call.unacked = 0

    def _give_back(self, stream_id: int, size: int) -> None:
        if self.lost:
            return
        try:
            self.conn.acknowledge_received_data(size, stream_id)
        except ngh2.NGH2Error:
            pass  # the session already ended

    def _trailers_only(self, stream_id: int, status: int, details: str) -> None:
        self.conn.send_response(stream_id, [*_RESPONSE_HEADERS, *status_headers(status, details)],
                                end_stream=True)

    def _refuse(self, stream_id: int, http_status: bytes) -> None:
        self.conn.send_response(stream_id, [(b":status", http_status)], end_stream=True)

    def flush(self) -> None:
        """Hand libnghttp2's frames to the socket in chunks, while the transport takes them:
        a chunk the kernel takes whole is never copied into the transport's buffer, chunks of
        one size reuse the same memory (one 1.2 MB bytes object per response made the kernel
        zero-fill ~300 fresh pages each time), and what the transport cannot take stays in
        libnghttp2 until `resume_writing`."""
        transport = self.transport
        if transport is None or self.lost:
            return
        conn = self.conn
        try:
            while not self.paused:
                data = conn.data_to_send(_CHUNK)
                if not data:
                    break
                transport.write(data)
            done = not conn.want_read and not conn.want_write
        except ngh2.NGH2Error:  # the session ended on a fatal error: nothing more can be sent
            done = True
        if done:
            self.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def shutdown(self) -> None:
        """GOAWAY (NO_ERROR) and close: the control plane stops."""
        if self.lost:
            return
        self.conn.send_goaway(0)
        self.flush()
        self.close()

    # --- keepalive -------------------------------------------------------------------------

    def _arm_keepalive(self) -> None:
        loop = asyncio.get_running_loop()
        self.keepalive = loop.call_later(KEEPALIVE_TIME, self._ping)

    def _ping(self) -> None:
        if self.lost:
            return
        self.ping_outstanding = True
        self.conn.ping(b"keepaliv")
        self.flush()
        self.keepalive = asyncio.get_running_loop().call_later(KEEPALIVE_TIMEOUT, self._ping_due)

    def _ping_due(self) -> None:
        if self.lost:
            return
        if self.ping_outstanding:
            logs.event("xds_keepalive_timeout", logging.WARNING, peer=self.peer)
            self.close()
            return
        self.keepalive = asyncio.get_running_loop().call_later(
            KEEPALIVE_TIME - KEEPALIVE_TIMEOUT, self._ping)


class H2Server:
    """Listens and owns every connection and call task (their errors are logged, never
    lost); `close()` sends each connection a GOAWAY and cancels what still runs."""

    def __init__(self, methods: dict[str, Method], *,
                 max_message: int = 64 * 1024 * 1024,
                 drain_grace: float = DRAIN_GRACE) -> None:
        self.methods = methods
        self.max_message = max_message
        self.drain_grace = drain_grace
        self.connections: set[H2Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: H2Connection(self), host or None, port, reuse_port=reuse_port or None,
            backlog=65535)  # the kernel caps it at net.core.somaxconn; storms need the room
        return int(self.server.sockets[0].getsockname()[1])

    def spawn(self, coroutine: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logs.event("xds_call_failed", logging.ERROR, error=repr(task.exception()))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for connection in list(self.connections):
            connection.shutdown()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()


def _peer(address: Any) -> str:
    """grpcio's peer() shape: ipv4:HOST:PORT or ipv6:[HOST]:PORT."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"
    return "unknown"


