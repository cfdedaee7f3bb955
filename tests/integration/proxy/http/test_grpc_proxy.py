"""gRPC through the sidecar with a real grpcio channel: per-call balancing, streaming,
statuses passed through, locally generated statuses and deadlines."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import pytest

from tests.integration.proxy.http.harness import (
    H2_OPTIONS,
    Sidecar,
    hcm,
    simple_routes,
    static_cluster,
)
from tests.support.grpc_backends import GrpcBackend


@pytest.fixture
def grpc_servers() -> Iterator[list[GrpcBackend]]:
    servers = [GrpcBackend(f"g{i}").start() for i in range(3)]
    yield servers
    for server in servers:
        server.stop()


def _routes(**route: object) -> dict[str, object]:
    return simple_routes({"match": {"prefix": "/", "grpc": {}},
                          "route": {"cluster": "grpc", **route}})


def _calls(port: int, count: int) -> list[bytes]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        unary = channel.unary_unary("/test.Echo/Unary")
        return [unary(b"hi", timeout=10) for _ in range(count)]


async def test_one_channel_spreads_unary_calls(grpc_servers) -> None:  # type: ignore[no-untyped-def]
    cluster = static_cluster("grpc", [s.port for s in grpc_servers],
                             typed_extension_protocol_options=H2_OPTIONS)
    async with Sidecar(hcm(_routes()), [cluster]) as sidecar:
        replies = await asyncio.to_thread(_calls, sidecar.port, 30)
    assert {reply.split(b":")[0] for reply in replies} == {b"g0", b"g1", b"g2"}
    assert sorted(s.calls["Unary"] for s in grpc_servers) == [10, 10, 10]


def _streaming_and_errors(port: int) -> tuple[list[bytes], grpc.StatusCode, str]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stream = channel.stream_stream("/test.Echo/Stream")
        echoed = list(stream(iter([b"a", b"b", b"c"]), timeout=10))
        fail = channel.unary_unary("/test.Echo/Fail")
        try:
            fail(b"x", timeout=10)
        except grpc.RpcError as error:
            return echoed, error.code(), error.details()
    raise AssertionError("Fail did not fail")


async def test_streaming_and_status_pass_through(grpc_servers) -> None:  # type: ignore[no-untyped-def]
    cluster = static_cluster("grpc", [grpc_servers[0].port],
                             typed_extension_protocol_options=H2_OPTIONS)
    async with Sidecar(hcm(_routes()), [cluster]) as sidecar:
        echoed, code, details = await asyncio.to_thread(_streaming_and_errors, sidecar.port)
    assert echoed == [b"a!", b"b!", b"c!"]
    assert (code, details) == (grpc.StatusCode.NOT_FOUND, "nope")


def _call_code(port: int, method: str, timeout: float) -> grpc.StatusCode:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            channel.unary_unary(f"/test.Echo/{method}")(b"x", timeout=timeout)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


async def test_local_errors_are_grpc_statuses(grpc_servers) -> None:  # type: ignore[no-untyped-def]
    empty = {"name": "grpc", "type": "STATIC", "connect_timeout": "1s",
             "typed_extension_protocol_options": H2_OPTIONS}
    async with Sidecar(hcm(_routes()), [empty]) as sidecar:
        code = await asyncio.to_thread(_call_code, sidecar.port, "Unary", 5)
    assert code == grpc.StatusCode.UNAVAILABLE
    cluster = static_cluster("grpc", [grpc_servers[0].port],
                             typed_extension_protocol_options=H2_OPTIONS)
    # grpc-timeout honoured (max_grpc_timeout 0 = no cap): the sidecar answers
    # DEADLINE_EXCEEDED itself when the deadline passes before the backend replies.
    async with Sidecar(hcm(_routes(max_grpc_timeout="0s")), [cluster]) as sidecar:
        code = await asyncio.to_thread(_call_code, sidecar.port, "Slow", 0.5)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_sidecar_itself_ends_an_expired_grpc_timeout(grpc_servers) -> None:  # type: ignore[no-untyped-def]
    from tests.integration.proxy.http.clients import H2Client

    cluster = static_cluster("grpc", [grpc_servers[0].port],
                             typed_extension_protocol_options=H2_OPTIONS)
    message = b"\x00\x00\x00\x00\x01x"  # gRPC length-prefixed message
    headers = [("content-type", "application/grpc"), ("te", "trailers"),
               ("grpc-timeout", "400m")]
    # the offset makes the sidecar's timer fire well before the server's own deadline
    routes = _routes(max_grpc_timeout="0s", grpc_timeout_offset="0.2s")
    async with Sidecar(hcm(routes), [cluster]) as sidecar, H2Client(sidecar.port) as client:
        response = await client.request("POST", "/test.Echo/Slow", headers=headers,
                                        body=message)
    assert response.status == 200
    assert response.header("grpc-status") == "4"  # DEADLINE_EXCEEDED, from the sidecar
    assert response.header("grpc-message") == "upstream request timeout"
