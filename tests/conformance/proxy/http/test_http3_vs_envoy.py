"""HTTP/3 downstream against Envoy 1.40: one bootstrap (a UDP listener with quic_options, the
QUIC transport socket, the HCM with codec_type HTTP3: Envoy's
configs/envoyproxy_io_proxy_http3_downstream.yaml shape), the same requests over aioquic's
client, the same answers: routes, the backends each stream went to (round robin per stream
over three), gRPC trailers, stats, and the access log fields. Plus the TCP twin: the alt-svc
advertisement Envoy's docs show is a `response_headers_to_add` on the TCP listener's route."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.proxy.http.test_http3_proxy import make_certificate
from tests.support.bootstraps import H2_OPTIONS, http_bootstrap, static_cluster
from tests.support.differential import envoy_and_pointsman
from tests.support.envoy import Envoy
from tests.support.http3 import h3_client, quic_bootstrap
from tests.support.http_backends import EchoBackend
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance

FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
LOG_FORMAT = {
    "protocol": "%PROTOCOL%", "method": "%REQ(:METHOD)%", "path": "%REQ(:PATH)%",
    "authority": "%REQ(:AUTHORITY)%", "code": "%RESPONSE_CODE%", "flags": "%RESPONSE_FLAGS%",
    "cluster": "%UPSTREAM_CLUSTER%", "received": "%BYTES_RECEIVED%", "sent": "%BYTES_SENT%",
    "details": "%RESPONSE_CODE_DETAILS%",
}
# Stats with Envoy's names that both keep for this exchange (one connection the client
# closes; 65 requests, one of them reset by the client with RESET_STREAM and STOP_SENDING).
STATS = ["http.ingress.downstream_cx_total", "http.ingress.downstream_cx_http3_total",
         "http.ingress.downstream_cx_ssl_total", "http.ingress.downstream_cx_destroy",
         "http.ingress.downstream_cx_destroy_remote", "http.ingress.downstream_rq_http3_total",
         "http.ingress.downstream_rq_rx_reset", "http.ingress.downstream_rq_total",
         "http.ingress.downstream_rq_2xx", "http.ingress.downstream_rq_4xx",
         "http3.quic_version_rfc_v1", "http3.rx_reset"]
ROUTES = [
    {"match": {"prefix": "/grpc"}, "route": {"cluster": "grpc"}},
    {"match": {"prefix": "/direct"}, "direct_response": {"status": 418,
                                                        "body": {"inline_string": "teapot"}}},
    {"match": {"prefix": "/"}, "route": {"cluster": "three"}},
]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("h3-envoy"))


@pytest.fixture(scope="module")
def backends() -> Iterator[list[EchoBackend]]:
    started = [EchoBackend(f"b{i}").start() for i in range(3)]
    started.append(EchoBackend("grpc", http2=True).start())
    yield started
    for backend in started:
        backend.stop()


async def _exchange(port: int) -> dict[str, Any]:
    """What one client sees from one proxy: the answers, and the backends of 60 streams."""
    async with h3_client(port) as client:
        get = await client.request("GET", "/hello")
        post = await client.request("POST", "/echo", body=b"p" * 20_000)
        direct = await client.request("GET", "/direct")
        grpc = await client.request(
            "POST", "/grpc.Echo/Say", body=b"\x00\x00\x00\x00\x02hi",
            headers=[("content-type", "application/grpc"), ("te", "trailers"),
                     ("x-echo-trailer", "grpc-status=0")])
        streams = await asyncio.gather(*(client.request("GET", f"/s{i}") for i in range(60)))
        await client.reset_after("/reset", 0.5, headers=[("x-echo-delay", "2")])
        await asyncio.sleep(1)  # the reset is taken before the connection closes
    return {
        "get": (get.status, json.loads(get.body)["path"]),
        "post": (post.status, json.loads(post.body)["body"] == "p" * 20_000),
        "direct": (direct.status, direct.body),
        "grpc": (grpc.status, grpc.trailers),
        "spread": sorted(Counter(r.header("x-backend") for r in streams).values()),
    }


def _log_lines(path: Path, expected: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= expected:
            return sorted((json.loads(line) for line in lines), key=lambda e: e["path"])
        time.sleep(0.1)
    raise AssertionError(f"{path}: fewer than {expected} access log lines")


def test_http3_downstream_like_envoy(backends: list[EchoBackend], certificate: tuple[Path, Path],
                                     tmp_path: Path) -> None:
    clusters = [static_cluster("three", [b.port for b in backends[:3]]),
                static_cluster("grpc", [backends[3].port],
                               typed_extension_protocol_options=H2_OPTIONS)]
    logs: dict[int, Path] = {}

    def bootstrap(port: int) -> dict[str, Any]:
        logs[port] = tmp_path / f"access-{port}.log"
        access_log = [{"name": "envoy.access_loggers.file", "typed_config": {
            "@type": FILE_LOG, "path": str(logs[port]),
            "log_format": {"json_format": LOG_FORMAT}}}]
        return quic_bootstrap(port, ROUTES, clusters, *certificate, access_log=access_log)

    envoy_port, ours_port = free_port(), free_port()
    with Envoy(bootstrap(envoy_port), name="envoy-h3") as envoy, \
            Pointsman(bootstrap(ours_port), name="pointsman-h3") as ours_proxy:
        envoy.wait_ready()
        ours_proxy.wait_ready()
        theirs = asyncio.run(_exchange(envoy_port))
        ours = asyncio.run(_exchange(ours_port))
        assert ours == theirs
        assert ours["spread"] == [20, 20, 20]
        assert ours["grpc"] == (200, [("grpc-status", "0")])
        envoy_log = _log_lines(logs[envoy_port], 65)
        ours_log = _log_lines(logs[ours_port], 65)
        for proxy in (envoy, ours_proxy):  # the client's close is counted, on a loaded machine
            proxy.wait_until(lambda p=proxy: p.stat(STATS[3]) == 1, 10, "connection counted")
        assert {name: ours_proxy.stat(name) for name in STATS} \
            == {name: envoy.stat(name) for name in STATS}
    assert ours_log == envoy_log
    assert {entry["protocol"] for entry in ours_log} == {"HTTP/3"}


def test_alt_svc_advertises_http3_on_the_tcp_listener_like_envoy(
        backends: list[EchoBackend]) -> None:
    """Envoy's way (docs intro/arch_overview/http/http3 "HTTP/3 advertisement", and its
    example config): the TCP listener's route adds `alt-svc: h3=":PORT"`; an HTTP/1.1 or
    HTTP/2 client learns the HTTP/3 endpoint from it (RFC 7838)."""
    alt_svc = 'h3=":10443"; ma=86400'
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "three"}}]

    def bootstrap(port: int) -> dict[str, Any]:
        config = http_bootstrap(port, routes, [static_cluster("three", [backends[0].port])])
        vhost = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
            "typed_config"]["route_config"]["virtual_hosts"][0]
        vhost["response_headers_to_add"] = [{"header": {"key": "alt-svc", "value": alt_svc}}]
        return config

    with envoy_and_pointsman(bootstrap, "alt-svc") as (envoy_port, ours_port):
        answers = [_alt_svc(port) for port in (envoy_port, ours_port)]
    assert answers == [alt_svc, alt_svc]


def _alt_svc(port: int) -> str | None:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        return response.getheader("alt-svc")
    finally:
        connection.close()



MALFORMED = {  # RFC 9114 4.2 / 4.3.1: each makes the request malformed
    "no_authority": [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/x")],
    "te_not_trailers": [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/x"),
                        (b":authority", b"a"), (b"te", b"gzip")],
    "connection_header": [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/x"),
                          (b":authority", b"a"), (b"connection", b"close")],
}


async def _malformed_outcome(port: int, block: list[tuple[bytes, bytes]]) -> str:
    """How the proxy answers one malformed request: a response, or the connection closed."""
    async with h3_client(port) as client:
        protocol = client.protocol
        stream_id = protocol._quic.get_next_available_stream_id()
        protocol.h3.send_headers(stream_id, block, end_stream=True)
        protocol.transmit()
        try:
            async with asyncio.timeout(5):
                await protocol.wait_closed()
        except TimeoutError:
            return "still open"
        return "connection closed"


def test_malformed_requests_end_the_connection_like_envoy(
        backends: list[EchoBackend], certificate: tuple[Path, Path]) -> None:
    """Both close the connection (Envoy's quiche with H3_FRAME_ERROR
    "http3.invalid_header_field", aioquic with H3_MESSAGE_ERROR naming the header)."""
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "three"}}]

    def bootstrap(port: int) -> dict[str, Any]:
        return quic_bootstrap(port, routes, [static_cluster("three", [backends[0].port])],
                              *certificate)

    with envoy_and_pointsman(bootstrap, "h3-malformed") as (envoy_port, ours_port):
        for case, block in MALFORMED.items():
            theirs = asyncio.run(_malformed_outcome(envoy_port, block))
            ours = asyncio.run(_malformed_outcome(ours_port, block))
            assert (case, ours) == (case, theirs) == (case, "connection closed")
