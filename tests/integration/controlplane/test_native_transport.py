"""The native xDS transport (controlplane/transport/h2_server.py) against real gRPC clients
(grpcio's) and a raw HTTP/2 client (libnghttp2's), on loopback: the call shapes, statuses,
cancellation, deadlines, flow control of large messages, and that nothing is left behind."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import ngh2
import pytest

from controlplane.transport.grpc_messages import prefix
from controlplane.transport.h2_server import H2Server, Method, ServerCall


def identity(data: bytes) -> bytes:
    return data


def number(data: bytes) -> bytes:
    """A deserialiser that refuses what is not digits."""
    return str(int(data)).encode()


class Echo:
    """Test methods: what each call saw, and whether it was cancelled."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.metadata: tuple[tuple[str, str], ...] = ()
        self.peer = ""

    async def unary(self, request: bytes, call: ServerCall) -> bytes:
        self.metadata = call.invocation_metadata()
        self.peer = call.peer()
        return request[::-1]

    async def stream(self, _requests: Any, call: ServerCall) -> None:
        while (message := await call.read()) is not grpc.aio.EOF:
            await call.write(message.upper())

    async def big(self, _requests: Any, call: ServerCall) -> None:
        size = int(await call.read())
        await call.write(b"z" * size)
        await call.write(b"after")

    async def abort(self, _request: bytes, call: ServerCall) -> bytes:
        await call.abort(grpc.StatusCode.INVALID_ARGUMENT, "nope: 100% \u00e9")
        raise AssertionError("abort returns")

    async def raises(self, _request: bytes, call: ServerCall) -> bytes:
        raise RuntimeError("a bug")

    async def hang(self, _requests: Any, call: ServerCall) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


@pytest.fixture
async def served() -> AsyncIterator[tuple[H2Server, Echo, int]]:
    echo = Echo()
    server = H2Server({
        "/test.Echo/Unary": Method(echo.unary, identity, False),
        "/test.Echo/Stream": Method(echo.stream, identity, True),
        "/test.Echo/Big": Method(echo.big, identity, True),
        "/test.Echo/Abort": Method(echo.abort, identity, False),
        "/test.Echo/Raise": Method(echo.raises, identity, False),
        "/test.Echo/Hang": Method(echo.hang, identity, True),
        "/test.Echo/Numbers": Method(echo.stream, number, True),  # requests are digits
    }, max_message=1 << 20)
    port = await server.start("127.0.0.1", 0)
    try:
        yield server, echo, port
    finally:
        await server.close()


def channel(port: int) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(f"127.0.0.1:{port}")


def unary(chan: grpc.aio.Channel, name: str) -> Any:
    return chan.unary_unary(f"/test.Echo/{name}", request_serializer=identity,
                            response_deserializer=identity)


def streaming(chan: grpc.aio.Channel, name: str) -> Any:
    return chan.stream_stream(f"/test.Echo/{name}", request_serializer=identity,
                              response_deserializer=identity)


async def test_unary_call_with_metadata_and_peer(served: tuple[H2Server, Echo, int]) -> None:
    _, echo, port = served
    async with channel(port) as chan:
        answer = await unary(chan, "Unary")(b"abc", metadata=(("x-token", "secret"),))
    assert answer == b"cba"
    assert ("x-token", "secret") in echo.metadata
    assert all(name not in ("content-type", "te") for name, _ in echo.metadata)
    assert echo.peer.startswith("ipv4:127.0.0.1:")


async def test_bidirectional_stream(served: tuple[H2Server, Echo, int]) -> None:
    _, _, port = served
    async with channel(port) as chan:
        call = streaming(chan, "Stream")()
        for word in (b"one", b"two", b""):
            await call.write(word)
            assert await call.read() == word.upper()
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK


async def test_a_message_larger_than_the_clients_window(
        served: tuple[H2Server, Echo, int]) -> None:
    """5 MB to a client whose stream window starts at 64 KiB: sent as the window opens, whole,
    and the next message after it."""
    _, _, port = served
    async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=(("grpc.max_receive_message_length", 8 << 20),
                                          ("grpc.http2.bdp_probe", 0))) as chan:
        call = streaming(chan, "Big")()
        await call.write(b"5000000")
        assert await call.read() == b"z" * 5_000_000
        assert await call.read() == b"after"
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK


@pytest.mark.parametrize(("method", "payload", "code", "details"), [
    ("Abort", b"x", grpc.StatusCode.INVALID_ARGUMENT, "nope: 100% \u00e9"),  # abort()
    ("Raise", b"x", grpc.StatusCode.UNKNOWN, "Exception calling application"),  # a bug
    ("Missing", b"x", grpc.StatusCode.UNIMPLEMENTED, "Method not found: /test.Echo/Missing"),
    ("Unary", b"x" * ((1 << 20) + 1), grpc.StatusCode.RESOURCE_EXHAUSTED, None),  # too big
])
async def test_a_failed_call_ends_with_its_status(
        served: tuple[H2Server, Echo, int], method: str, payload: bytes,
        code: grpc.StatusCode, details: str | None) -> None:
    _, _, port = served
    async with channel(port) as chan:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await unary(chan, method)(payload)
    assert failed.value.code() == code
    if details is not None:
        assert failed.value.details() == details


async def test_a_client_cancel_cancels_the_call_and_leaves_nothing(
        served: tuple[H2Server, Echo, int]) -> None:
    """RST_STREAM from grpcio's client (the call cancelled): the method is cancelled and its
    task is gone; the connection stays, idle, as gRPC keeps it."""
    server, echo, port = served
    async with channel(port) as chan:
        call = streaming(chan, "Hang")()
        await call.write(b"x")
        await wait_until(lambda: len(server.tasks) == 1)
        call.cancel()
        await asyncio.wait_for(echo.cancelled.wait(), 5)
        await wait_until(lambda: not server.tasks)
        assert all(not connection.calls for connection in server.connections)


async def test_a_lost_connection_cancels_its_calls(served: tuple[H2Server, Echo, int]) -> None:
    server, echo, port = served
    conn, _reader, writer = await raw_connection(port)
    try:
        stream_id = conn.send_request(request_headers("/test.Echo/Hang"))
        conn.send_data(stream_id, prefix(1) + b"x")
        writer.write(conn.data_to_send())
        await wait_until(lambda: len(server.tasks) == 1)
    finally:
        writer.close()  # no GOAWAY, no RST_STREAM: the socket just closes
    await asyncio.wait_for(echo.cancelled.wait(), 5)
    await wait_until(lambda: not server.tasks and not server.connections)


async def test_a_deadline_ends_the_call_with_deadline_exceeded(
        served: tuple[H2Server, Echo, int]) -> None:
    server, echo, port = served
    answer = await raw_call(port, "/test.Echo/Hang", extra=((b"grpc-timeout", b"200m"),))
    assert answer.status == b"200"
    assert answer.grpc_status == b"4"  # DEADLINE_EXCEEDED
    assert echo.cancelled.is_set()
    await wait_until(lambda: not server.tasks)


@pytest.mark.parametrize(("method", "content_type", "status"), [
    (b"GET", b"application/grpc", b"405"),
    (b"POST", b"application/json", b"415"),
])
async def test_not_a_grpc_request(served: tuple[H2Server, Echo, int], method: bytes,
                                  content_type: bytes, status: bytes) -> None:
    _, _, port = served
    answer = await raw_call(port, "/test.Echo/Unary", method=method, content_type=content_type)
    assert answer.status == status


async def test_a_compressed_message_is_unimplemented(served: tuple[H2Server, Echo, int]) -> None:
    _, _, port = served
    answer = await raw_call(port, "/test.Echo/Unary",
                            body=b"\x01" + (3).to_bytes(4, "big") + b"abc")
    assert answer.grpc_status == b"12"


async def test_a_request_that_does_not_parse_ends_the_stream_with_internal(
        served: tuple[H2Server, Echo, int], caplog: pytest.LogCaptureFixture) -> None:
    """As grpcio: a request message its deserialiser refuses ends the call with INTERNAL
    (the method, blocked in read(), is cancelled); nothing is logged as an error."""
    server, _, port = served
    answer = await raw_call(port, "/test.Echo/Numbers", body=prefix(3) + b"abc")
    assert answer.grpc_status == b"13"
    await wait_until(lambda: not server.tasks)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_a_request_cut_mid_message_is_internal(served: tuple[H2Server, Echo, int]) -> None:
    _, _, port = served
    answer = await raw_call(port, "/test.Echo/Unary", body=prefix(10) + b"abc")
    assert answer.grpc_status == b"13"


async def test_garbage_instead_of_http2_closes_the_connection(
        served: tuple[H2Server, Echo, int], caplog: pytest.LogCaptureFixture) -> None:
    """No client preface (RFC 9113 3.4): the connection closes, and nothing is logged as an
    error (a peer's bytes never put a traceback in the log)."""
    server, _, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(reader.read(), 5)  # the server closes: read() returns at EOF
    finally:
        writer.close()
    await wait_until(lambda: not server.connections)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


class RawAnswer:
    def __init__(self) -> None:
        self.status = b""
        self.grpc_status = b""


async def raw_connection(port: int) -> tuple[ngh2.Connection, asyncio.StreamReader,
                                             asyncio.StreamWriter]:
    """A libnghttp2 client session and its socket (the preface is sent with the first write)."""
    conn = ngh2.Connection(ngh2.Role.CLIENT, ngh2.Configuration())
    conn.initiate_connection({})
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return conn, reader, writer


def request_headers(path: str, method: bytes = b"POST",
                    content_type: bytes = b"application/grpc",
                    extra: tuple[tuple[bytes, bytes], ...] = ()) -> list[tuple[bytes, bytes]]:
    return [(b":method", method), (b":scheme", b"http"), (b":path", path.encode()),
            (b":authority", b"test"), (b"content-type", content_type), (b"te", b"trailers"),
            *extra]


async def raw_call(port: int, path: str, *, method: bytes = b"POST",
                   content_type: bytes = b"application/grpc",
                   extra: tuple[tuple[bytes, bytes], ...] = (),
                   body: bytes | None = None) -> RawAnswer:
    """One request over libnghttp2's client, the stream left open unless a body is given."""
    conn, reader, writer = await raw_connection(port)
    answer = RawAnswer()
    try:
        stream_id = conn.send_request(request_headers(path, method, content_type, extra))
        if body is not None:
            conn.send_data(stream_id, body, end_stream=True)
        writer.write(conn.data_to_send())
        ended = False
        while not ended:
            data = await asyncio.wait_for(reader.read(65536), 5)
            assert data, "the connection closed before the answer"
            conn.receive_data(data)
            for event in conn.events():
                if isinstance(event, ngh2.ResponseReceived):
                    for name, value in event.headers:
                        if name == b":status":
                            answer.status = value
                        elif name == b"grpc-status":
                            answer.grpc_status = value
                    ended = ended or event.end_stream
                elif isinstance(event, ngh2.TrailersReceived):
                    answer.grpc_status = dict(event.headers).get(b"grpc-status", b"")
                    ended = True
                elif isinstance(event, ngh2.StreamClosed | ngh2.StreamReset):
                    ended = True
            writer.write(conn.data_to_send())
    finally:
        writer.close()
    return answer


async def wait_until(condition: Any) -> None:
    """Poll `condition` for up to 5 s (the server's bookkeeping has no event to wait on)."""
    for _ in range(250):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in 5 s")


async def test_a_client_cannot_queue_more_than_its_window_of_unread_requests(
        served: tuple[H2Server, Echo, int]) -> None:
    """3 MiB of requests to a call that reads none: the server holds at most its 1 MiB stream
    window of them; the rest waits in the client (RFC 9113 6.9: flow control)."""
    server, _, port = served
    conn, reader, writer = await raw_connection(port)
    try:
        stream_id = conn.send_request(request_headers("/test.Echo/Hang"))
        message = prefix(100_000) + b"r" * 100_000
        for _ in range(30):
            conn.send_data(stream_id, message)
        for _ in range(20):  # let the exchange settle: SETTINGS, DATA up to the window
            writer.write(conn.data_to_send())
            try:
                conn.receive_data(await asyncio.wait_for(reader.read(65536), 0.2))
            except TimeoutError:
                pass
            conn.events()
        calls = [call for connection in server.connections for call in connection.calls.values()]
        assert len(calls) == 1
        assert 0 < calls[0].unacked <= 1024 * 1024
        assert conn.queued_body_size(stream_id) >= 3_000_150 - 1024 * 1024
    finally:
        writer.close()


async def test_requests_read_give_the_window_back(served: tuple[H2Server, Echo, int]) -> None:
    """3 MiB through a 1 MiB stream window: each request read returns its bytes."""
    _, _, port = served
    async with channel(port) as chan:
        call = streaming(chan, "Stream")()
        for index in range(30):
            await call.write(bytes([97 + index % 26]) * 100_000)
            answer = await asyncio.wait_for(call.read(), 5)
            assert answer == bytes([65 + index % 26]) * 100_000
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK


async def test_data_nobody_reads_goes_back_to_the_connection_window(
        served: tuple[H2Server, Echo, int]) -> None:
    """20 MiB of request bodies to a method that does not exist, on one connection whose window
    is 16 MiB: each is answered UNIMPLEMENTED and the connection still serves a real call."""
    _, _, port = served
    conn, reader, writer = await raw_connection(port)
    body = prefix(1_000_000) + b"u" * 1_000_000
    try:
        for path, expected in [*([("/test.Echo/Missing", b"12")] * 20),
                               ("/test.Echo/Unary", b"0")]:
            stream_id = conn.send_request(request_headers(path))
            conn.send_data(stream_id, body, end_stream=True)
            status = b""
            while not status:
                writer.write(conn.data_to_send())
                data = await asyncio.wait_for(reader.read(1 << 20), 5)
                assert data, "the connection closed"
                conn.receive_data(data)
                for event in conn.events():
                    if (isinstance(event, ngh2.ResponseReceived | ngh2.TrailersReceived)
                            and event.stream_id == stream_id):
                        status = dict(event.headers).get(b"grpc-status", b"")
            assert status == expected
            for _ in range(50):  # the rest of the body, until the stream is done with
                if not conn.queued_body_size(stream_id):
                    break
                writer.write(conn.data_to_send())
                data = await asyncio.wait_for(reader.read(1 << 20), 5)
                conn.receive_data(data)
                conn.events()
    finally:
        writer.close()
