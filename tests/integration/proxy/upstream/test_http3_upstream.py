"""Upstream HTTP/3 through the real `pointsman proxy` process: an HTTP/1.1 client -> the
sidecar (a cluster with explicit http3_protocol_options and the QUIC transport socket) ->
a second sidecar serving HTTP/3 on a QUIC listener -> an echo backend over HTTP/1.1.

GET, POST with a body, 30 concurrent requests multiplexed on one QUIC connection, SNI and
CA validation (a wrong CA fails the handshake: 503 UF), and an upstream that goes away
(503 with Envoy's UF flag and details)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.integration.proxy.http.clients import H2Client
from tests.integration.proxy.http.test_http3_proxy import make_certificate
from tests.support.bootstraps import H2_OPTIONS, http_bootstrap, static_cluster
from tests.support.http3 import h3_cluster, quic_bootstrap
from tests.support.http_backends import EchoBackend
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

ROUTES = [{"match": {"prefix": "/"}, "route": {"cluster": "h3"}}]
LOG_FORMAT = {"code": "%RESPONSE_CODE%", "flags": "%RESPONSE_FLAGS%",
              "details": "%RESPONSE_CODE_DETAILS%"}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("h3up"))


@pytest.fixture(scope="module")
def backend() -> Iterator[EchoBackend]:
    with EchoBackend("echo") as started:
        yield started


def request(port: int, path: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request; (status, headers, body), error statuses included."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                 method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=20) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def h3_server(port: int, backend: EchoBackend, cert: Path, key: Path) -> Pointsman:
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "echo"}}]
    return Pointsman(quic_bootstrap(port, routes, [static_cluster("echo", [backend.port])],
                                    cert, key, stat_prefix="h3in"), name="h3-upstream")


def client_side(port: int, upstream_port: int, trusted_ca: Path | None,
                **cluster: Any) -> dict[str, Any]:
    return http_bootstrap(port, ROUTES, [h3_cluster("h3", upstream_port, trusted_ca,
                                                    **cluster)])


def test_get_post_and_30_concurrent_on_one_quic_connection(
        backend: EchoBackend, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    upstream_port, port = free_port(), free_port()
    with h3_server(upstream_port, backend, cert, key) as upstream, \
            Pointsman(client_side(port, upstream_port, cert), name="h3-client") as sidecar:
        upstream.wait_ready()
        sidecar.wait_ready()
        status, headers, body = request(port, "/hello?x=1")
        assert status == 200
        echoed = json.loads(body)
        assert (echoed["method"], echoed["path"]) == ("GET", "/hello?x=1")
        assert headers["x-backend"] == "echo"
        status, _, body = request(port, "/post", b"b" * 3_000_000)  # past the 1 MiB limits
        assert status == 200
        assert json.loads(body)["body"] == "b" * 3_000_000
        with ThreadPoolExecutor(30) as pool:
            answers = list(pool.map(lambda i: request(port, f"/c{i}"), range(30)))
        assert [(s, json.loads(b)["path"]) for s, _, b in answers] \
            == [(200, f"/c{i}") for i in range(30)]
        # Every request went over one QUIC connection, which the server saw as HTTP/3.
        assert sidecar.stat("cluster.h3.upstream_cx_total") == 1
        assert upstream.stat("http.h3in.downstream_cx_http3_total") == 1
        assert upstream.stat("http.h3in.downstream_rq_http3_total") == 32


def test_grpc_shaped_exchange_with_trailers_both_ways(certificate: tuple[Path, Path]) -> None:
    """HTTP/2 client -> sidecar -> HTTP/3 -> sidecar -> h2c backend: the request's trailers go
    up as a trailing HEADERS frame (the server side sees the request complete only after
    them) and the backend's grpc-status trailer comes back."""
    cert, key = certificate
    upstream_port, port = free_port(), free_port()
    headers = [("content-type", "application/grpc"), ("te", "trailers"),
               ("x-echo-trailer", "grpc-status=0")]
    with EchoBackend("grpc", http2=True) as backend:
        routes = [{"match": {"prefix": "/"}, "route": {"cluster": "echo"}}]
        server = quic_bootstrap(upstream_port, routes, [static_cluster(
            "echo", [backend.port], typed_extension_protocol_options=H2_OPTIONS)],
            cert, key, stat_prefix="h3in")
        with Pointsman(server, name="h3-upstream") as upstream, \
                Pointsman(client_side(port, upstream_port, cert), name="h3-client") as sidecar:
            upstream.wait_ready()
            sidecar.wait_ready()
            response = asyncio.run(_h2_request(port, headers))
        assert response.status == 200
        assert response.trailers == [("grpc-status", "0")]
        assert json.loads(response.body)["body"] == "\x00\x00\x00\x00\x02hi"
        assert backend.seen[0]["method"] == "POST"


async def _h2_request(port: int, headers: list[tuple[str, str]]) -> Any:
    async with H2Client(port) as client:
        return await client.request("POST", "/grpc.Echo/Say", headers=headers,
                                    body=b"\x00\x00\x00\x00\x02hi",
                                    trailers=[("x-client-trailer", "1")])


def test_wrong_trusted_ca_fails_the_handshake(
        backend: EchoBackend, certificate: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = certificate
    other_ca, _ = make_certificate(tmp_path)
    upstream_port, port = free_port(), free_port()
    with h3_server(upstream_port, backend, cert, key) as upstream, \
            Pointsman(client_side(port, upstream_port, other_ca), name="h3-client") as sidecar:
        upstream.wait_ready()
        sidecar.wait_ready()
        status, headers, _ = request(port, "/hello")
        assert status == 503
        assert headers.get("x-backend") is None
        assert upstream.stat("http.h3in.downstream_rq_http3_total") == 0


def test_upstream_gone_is_503_uf(backend: EchoBackend, certificate: tuple[Path, Path],
                                 tmp_path: Path) -> None:
    """Nothing serves QUIC on the port: the connect fails, 503 with UF as in Envoy."""
    cert, _key = certificate
    port = free_port()
    log_path = tmp_path / "access.log"
    bootstrap = client_side(port, free_port(), cert)
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]
    hcm["access_log"] = [{"name": "envoy.access_loggers.file", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
        "path": str(log_path), "log_format": {"json_format": LOG_FORMAT}}}]
    with Pointsman(bootstrap, name="h3-client") as sidecar:
        sidecar.wait_ready()
        status, _, body = request(port, "/hello")
        assert status == 503
        assert body.startswith(b"upstream connect error or disconnect/reset before headers")
        sidecar.wait_until(lambda: log_path.exists() and bool(log_path.read_text().strip()), 10,
                           "access log written")
        entry = json.loads(log_path.read_text().splitlines()[0])
        assert entry["flags"] == "UF"
        # Envoy's QUIC client calls the ICMP refusal a local connection failure.
        assert entry["details"].startswith(
            "upstream_reset_before_response_started{local_connection_failure|")


def test_upstream_going_away_mid_request_is_503(
        backend: EchoBackend, certificate: tuple[Path, Path]) -> None:
    """The HTTP/3 server stops while a request waits for its response: the stream in flight
    fails (503, reset before headers) and the next request finds nobody (503 too)."""
    cert, key = certificate
    upstream_port, port = free_port(), free_port()
    with h3_server(upstream_port, backend, cert, key) as upstream, \
            Pointsman(client_side(port, upstream_port, cert), name="h3-client") as sidecar:
        upstream.wait_ready()
        sidecar.wait_ready()
        assert request(port, "/warm")[0] == 200
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(request_with, port, "/slow", [("x-echo-delay", "5")])
            upstream.wait_until(lambda: backend.requests["/slow"] == 1, 10, "slow request")
            upstream.stop()
            status, _, body = slow.result(timeout=30)
        assert status == 503
        assert body.startswith(b"upstream connect error or disconnect/reset before headers")
        assert request(port, "/after")[0] == 503
        assert sidecar.stat("cluster.h3.upstream_cx_destroy_with_active_rq") == 1


def request_with(port: int, path: str, headers: list[tuple[str, str]]
                 ) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=dict(headers))
    try:
        with urllib.request.urlopen(req, timeout=20) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()
