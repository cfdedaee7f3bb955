"""HTTP/3 downstream through the real `pointsman proxy` process, with aioquic's own client:
GET and POST with bodies, 60 concurrent streams on one QUIC connection spread over three
backends (per-stream balancing), gRPC-shaped exchanges with trailers, QUIC hygiene
(max_concurrent_streams, idle_timeout, malformed datagrams). Debian's curl here (7.88.1) is
built without HTTP/3 (`curl --version` lists no HTTP3 feature), so aioquic is the client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aioquic.buffer import Buffer
from aioquic.quic.packet import pull_quic_header

from tests.support.bootstraps import H2_OPTIONS, static_cluster
from tests.support.http3 import h3_client, quic_bootstrap
from tests.support.http_backends import EchoBackend
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

PREVIOUS_HOSTS = ("type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3."
                  "PreviousHostsPredicate")
ROUTES = [{"match": {"prefix": "/grpc"}, "route": {"cluster": "grpc"}},
          {"match": {"prefix": "/flaky"}, "route": {
              "cluster": "flaky", "retry_policy": {
                  "retry_on": "5xx", "num_retries": 1, "retry_host_predicate": [
                      {"name": "envoy.retry_host_predicates.previous_hosts",
                       "typed_config": {"@type": PREVIOUS_HOSTS}}]}}},
          {"match": {"prefix": "/"}, "route": {"cluster": "three"}}]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("h3"))


@pytest.fixture(scope="module")
def backends() -> Iterator[list[EchoBackend]]:
    started = [EchoBackend(f"b{i}").start() for i in range(3)]
    started.append(EchoBackend("grpc", http2=True).start())
    started.append(EchoBackend("failing", fail_status=503).start())
    yield started
    for backend in started:
        backend.stop()


def _bootstrap(port: int, backends: list[EchoBackend], certificate: tuple[Path, Path],
               **quic: Any) -> dict[str, Any]:
    clusters = [static_cluster("three", [b.port for b in backends[:3]]),
                static_cluster("grpc", [backends[3].port],
                               typed_extension_protocol_options=H2_OPTIONS),
                static_cluster("flaky", [backends[4].port, backends[0].port])]
    return quic_bootstrap(port, ROUTES, clusters, *certificate, quic_options=quic)


@pytest.fixture(scope="module")
def sidecar(backends: list[EchoBackend], certificate: tuple[Path, Path]
            ) -> Iterator[tuple[Pointsman, int]]:
    port = free_port()
    proxy = Pointsman(_bootstrap(port, backends, certificate, quic_protocol_options={
        "max_concurrent_streams": 80}), name="pointsman-h3")
    try:
        proxy.wait_ready()
        yield proxy, port
    finally:
        proxy.stop()


async def test_get_and_post_with_bodies(sidecar: tuple[Pointsman, int]) -> None:
    proxy, port = sidecar
    async with h3_client(port) as client:
        got = await client.request("GET", "/hello?x=1")
        assert got.status == 200
        seen = json.loads(got.body)
        assert seen["path"] == "/hello?x=1" and seen["authority"] == "example.com"
        assert ["x-forwarded-proto", "https"] in seen["headers"]
        body = os.urandom(300_000)
        posted = await client.request("POST", "/upload", body=body,
                                      headers=[("x-echo-size", "500000")])
        assert posted.status == 200 and len(posted.body) == 500_000
    assert proxy.stat("http.ingress.downstream_cx_http3_total") >= 1


async def test_sixty_streams_on_one_connection_spread_over_three_backends(
        sidecar: tuple[Pointsman, int], backends: list[EchoBackend]) -> None:
    _proxy, port = sidecar
    before = [b.total for b in backends[:3]]
    async with h3_client(port) as client:
        responses = await asyncio.gather(*(client.request("GET", f"/r{i}") for i in range(60)))
    assert [r.status for r in responses] == [200] * 60
    spread = [b.total - n for b, n in zip(backends[:3], before, strict=True)]
    assert spread == [20, 20, 20]  # round robin per stream, not per connection
    assert len({r.header("x-backend") for r in responses}) == 3


async def test_grpc_shaped_request_gets_its_trailers(sidecar: tuple[Pointsman, int],
                                                     backends: list[EchoBackend]) -> None:
    _proxy, port = sidecar
    message = b"\x00\x00\x00\x00\x05hello"  # one length-prefixed gRPC message
    async with h3_client(port) as client:
        response = await client.request(
            "POST", "/grpc.Echo/Say", body=message,
            headers=[("content-type", "application/grpc"), ("te", "trailers"),
                     ("x-echo-trailer", "grpc-status=0"),
                     ("x-echo-trailer", "grpc-message=ok")])
    assert response.status == 200
    assert response.trailers == [("grpc-status", "0"), ("grpc-message", "ok")]
    seen = backends[3].seen[-1]
    assert seen["body"] == message.decode()
    assert ("content-type", "application/grpc") in [tuple(h) for h in seen["headers"]]


async def test_max_concurrent_streams_is_advertised(sidecar: tuple[Pointsman, int]) -> None:
    _proxy, port = sidecar
    async with h3_client(port) as client:
        await client.request("GET", "/")
        # quic_protocol_options.max_concurrent_streams (80 here; aioquic's own default is 128)
        assert client.protocol._quic._remote_max_streams_bidi == 80


def _udp(port: int, payload: bytes, *, wait: float = 0.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(payload, ("127.0.0.1", port))
        if not wait:
            return None
        sock.settimeout(wait)
        try:
            return sock.recv(65536)
        except TimeoutError:
            return None


async def test_malformed_datagrams_are_dropped_and_counted(sidecar: tuple[Pointsman, int]
                                                           ) -> None:
    proxy, port = sidecar
    name = f"listener.127.0.0.1_{port}.udp.downstream_rx_datagram_dropped"
    before = proxy.stat(name)
    junk = [b"", b"\x00", os.urandom(7), b"\xc0" + os.urandom(40),  # truncated long header
            b"\xc3\x00\x00\x00\x01" + b"\xff" * 30,  # CID lengths past the end
            b"\x40" + os.urandom(1300),  # a short header for no connection
            # an Initial below 1200 bytes (RFC 9000 14.1)
            b"\xc0\x00\x00\x00\x01\x08" + os.urandom(8) + b"\x00" + os.urandom(100)]
    for _round in range(20):
        for payload in junk:
            _udp(port, payload)
    # A long header with an unknown version gets Version Negotiation (RFC 9000 6.1).
    answer = _udp(port, b"\xc0\x1a\x2a\x3a\x4a\x08" + b"d" * 8 + b"\x08" + b"s" * 8
                  + b"\x00" * 1200, wait=5.0)
    assert answer is not None
    negotiation = pull_quic_header(Buffer(data=answer), host_cid_length=8)
    assert negotiation.version == 0 and negotiation.destination_cid == b"s" * 8
    await asyncio.sleep(0.5)
    assert proxy.stat(name) - before >= 20 * 5  # the empty datagram may not count
    assert proxy.alive()
    async with h3_client(port) as client:  # still serving
        assert (await client.request("GET", "/after-junk")).status == 200
    assert "Traceback" not in proxy.output()


async def test_idle_timeout_closes_the_connection(backends: list[EchoBackend],
                                                  certificate: tuple[Path, Path]) -> None:
    port = free_port()
    scope = f"listener.127.0.0.1_{port}"
    with Pointsman(_bootstrap(port, backends, certificate, idle_timeout="1s"),
                   name="pointsman-h3-idle") as proxy:
        proxy.wait_ready()
        async with h3_client(port) as client:
            assert (await client.request("GET", "/")).status == 200
            assert proxy.stat(f"{scope}.downstream_cx_active") == 1
            closed = client.protocol.wait_closed()
            async with asyncio.timeout(8):  # 1 s idle, plus aioquic's 3 PTO for the close
                await closed
        await asyncio.to_thread(proxy.wait_until,  # the sidecar's own idle timer ends it
                                lambda: proxy.stat(f"{scope}.downstream_cx_destroy") == 1,
                                8.0, "connection idled out")
        assert proxy.stat(f"{scope}.downstream_cx_active") == 0


def _udp_sockets_on(port: int) -> int:
    """Sockets bound to UDP `port` on this machine (/proc/net/udp: local_address is HEX:PORT)."""
    lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    return sum(1 for line in lines if int(line.split()[1].split(":")[1], 16) == port)


async def test_with_workers_one_of_them_serves_quic(backends: list[EchoBackend],
                                                    certificate: tuple[Path, Path]) -> None:
    """--concurrency 3: worker 0 alone binds the QUIC listener (proxy.workers._worker says
    why), so every datagram of a connection reaches the one worker knowing its IDs."""
    port = free_port()
    with Pointsman(_bootstrap(port, backends, certificate), name="pointsman-h3-workers",
                   extra_args=("--concurrency", "3")) as proxy:
        proxy.wait_ready(60)
        assert _udp_sockets_on(port) == 1
        for _ in range(4):  # new client ports: each a new 4-tuple for the kernel's hash
            async with h3_client(port) as client:
                responses = await asyncio.gather(*(client.request("GET", f"/w{i}")
                                                   for i in range(5)))
                assert [r.status for r in responses] == [200] * 5


async def test_shutdown_drain_finishes_streams_in_flight_and_refuses_new_ones(
        backends: list[EchoBackend], certificate: tuple[Path, Path]) -> None:
    """--shutdown-drain-s: the connection gets GOAWAY (RFC 9114 5.2); the request in flight
    is answered, a request opened after it is refused with H3_REQUEST_REJECTED."""
    port = free_port()
    with Pointsman(_bootstrap(port, backends, certificate), name="pointsman-h3-drain",
                   extra_args=("--shutdown-drain-s", "10")) as proxy:
        proxy.wait_ready()
        async with h3_client(port) as client:
            assert (await client.request("GET", "/warm")).status == 200
            slow = asyncio.create_task(client.request("GET", "/slow",
                                                      headers=[("x-echo-delay", "1.5")]))
            await asyncio.sleep(0.4)
            os.kill(proxy.pid, signal.SIGTERM)
            await asyncio.sleep(0.4)
            late = await client.request("GET", "/late")
            assert late.reset == 0x10B  # H3_REQUEST_REJECTED
            assert (await slow).status == 200
        await asyncio.to_thread(proxy.popen.wait, 15)


async def test_a_request_body_an_upstream_does_not_read_holds_the_clients_window(
        backends: list[EchoBackend], certificate: tuple[Path, Path]) -> None:
    """Back-pressure: an upstream that never reads fills its socket, the request body
    reaches the buffer limit, and the stream's QUIC window stops growing (aioquic alone
    would double it as data arrives, so the client could push the whole body into us)."""
    stall = socket.socket()
    stall.bind(("127.0.0.1", 0))
    stall.listen()
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "stall", "timeout": "0s"}}]
    port = free_port()
    bootstrap = quic_bootstrap(port, routes, [static_cluster("stall", [stall.getsockname()[1]])],
                               *certificate, quic_options={"quic_protocol_options": {
                                   "initial_stream_window_size": 65536}})
    body = bytes(64 * 1024 * 1024)
    try:
        with Pointsman(bootstrap, name="pointsman-h3-hold") as proxy:
            proxy.wait_ready()
            async with h3_client(port) as client:
                upload = asyncio.create_task(client.request("POST", "/upload", body=body))
                await asyncio.sleep(6)
                stream = client.protocol._quic._streams[0]
                granted = stream.max_stream_data_remote
                assert granted < len(body) // 2, granted
                upload.cancel()
                await asyncio.gather(upload, return_exceptions=True)
    finally:
        stall.close()


async def test_retries_work_over_http3(sidecar: tuple[Pointsman, int],
                                       backends: list[EchoBackend]) -> None:
    """The router is the same for every protocol: a 503 from one host of the cluster is
    retried on the other (retry_on 5xx, previous_hosts), per request of one HTTP/3
    connection, its body replayed."""
    proxy, port = sidecar
    failed_before = backends[4].total
    async with h3_client(port) as client:
        responses = await asyncio.gather(*(client.request("POST", f"/flaky/{i}", body=b"b" * 5000)
                                           for i in range(6)))
    assert [r.status for r in responses] == [200] * 6
    assert {r.header("x-backend") for r in responses} == {"b0"}
    assert backends[4].total - failed_before >= 1  # some went to the failing host first
    assert proxy.stat("cluster.flaky.upstream_rq_retry") >= 1
