"""tcp_proxy behaviours on loopback, with the sidecar's Server in this process: idle timeout,
connect retries, listener filter timeout, TLS termination to a plain upstream, large
transfers both ways at once, upstream reset."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.bootstrap import load_bootstrap
from proxy.server import Server
from tests.integration.proxy.helpers import (
    DOWNSTREAM_TLS,
    TLS_INSPECTOR,
    TaggedServer,
    listener,
    static_cluster,
    tcp_proxy,
    tls_files,
)
from tests.support.ports import free_port
from tests.support.tcp_servers import port_of, start_server, stop_servers


@contextlib.asynccontextmanager
async def running(tmp_path: Path, bootstrap: dict[str, Any]) -> AsyncIterator[Server]:
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(bootstrap))
    server = Server(load_bootstrap(path), drain_timeout=1)
    await server.start()
    try:
        async with asyncio.timeout(20):
            await server.wait_ready()
        yield server
    finally:
        await server.close()


def config(port: int, clusters: list[dict[str, Any]], chains: list[dict[str, Any]],
           **listener_extra: Any) -> dict[str, Any]:
    return {"static_resources": {"listeners": [listener("l", port, chains, **listener_extra)],
                                 "clusters": clusters}}


@pytest.fixture
def backend() -> Iterator[TaggedServer]:
    server = TaggedServer("a")
    yield server
    server.stop()


async def test_idle_timeout_closes_and_counts(tmp_path: Path, backend: TaggedServer) -> None:
    port = free_port()
    bootstrap = config(port, [static_cluster("backend", [backend.port])],
                       [{"filters": [tcp_proxy("backend", idle_timeout="0.3s")]}])
    async with running(tmp_path, bootstrap) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.readline() == b"a \n"
        async with asyncio.timeout(10):
            assert await reader.read() == b""  # closed by the proxy after 0.3 s idle
        writer.close()
        assert server.stats.counter("tcp.tcp.idle_timeout").value == 1


async def test_max_connect_attempts_moves_past_a_dead_host(tmp_path: Path,
                                                           backend: TaggedServer) -> None:
    port, dead = free_port(), free_port()
    bootstrap = config(port, [static_cluster("backend", [dead, backend.port])],
                       [{"filters": [tcp_proxy("backend", max_connect_attempts=2)]}])
    async with running(tmp_path, bootstrap) as server:
        for _ in range(4):  # every connection reaches the live host, some after a retry
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await reader.readline() == b"a \n"
            writer.close()
        failed = server.stats.counter("cluster.backend.upstream_cx_connect_fail").value
        assert failed >= 2  # round robin sends at least every other first attempt to it
        assert server.stats.counter("cluster.backend.upstream_cx_total").value == 4 + failed


async def test_listener_filter_timeout(tmp_path: Path, backend: TaggedServer) -> None:
    port = free_port()
    inspector = [{"name": "tls_inspector", "typed_config": {"@type": TLS_INSPECTOR}}]
    bootstrap = config(port, [static_cluster("backend", [backend.port])],
                       [{"filters": [tcp_proxy("backend")]}],
                       listener_filters=inspector, listener_filters_timeout="0.3s")
    async with running(tmp_path, bootstrap) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        async with asyncio.timeout(10):
            assert await reader.read() == b""  # silent client: closed after the timeout
        writer.close()
        scope = f"listener.127.0.0.1_{port}."
        assert server.stats.counter(scope + "downstream_pre_cx_timeout").value == 1
    port = free_port()
    bootstrap = config(port, [static_cluster("backend", [backend.port])],
                       [{"filters": [tcp_proxy("backend")]}], listener_filters=inspector,
                       listener_filters_timeout="0.3s", continue_on_listener_filters_timeout=True)
    async with running(tmp_path, bootstrap):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        async with asyncio.timeout(10):  # server-first protocols still work
            assert await reader.readline() == b"a \n"
        writer.close()


async def test_tls_termination_to_plain_upstream(tmp_path: Path, backend: TaggedServer) -> None:
    files = tls_files(tmp_path, ["proxy.test"])
    cert, key = files["proxy.test"]
    port = free_port()
    termination = {"name": "tls", "typed_config": {
        "@type": DOWNSTREAM_TLS, "common_tls_context": {
            "alpn_protocols": ["h2", "http/1.1"],
            "tls_certificates": [{"certificate_chain": {"filename": str(cert)},
                                  "private_key": {"filename": str(key)}}]}}}
    bootstrap = config(port, [static_cluster("backend", [backend.port])],
                       [{"filters": [tcp_proxy("backend")], "transport_socket": termination}])
    client = ssl.create_default_context(cafile=str(files["ca"][0]))
    client.set_alpn_protocols(["http/1.1"])
    async with running(tmp_path, bootstrap):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client,
                                                       server_hostname="proxy.test")
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"
        assert await reader.readline() == b"a \n"  # plain upstream: no SNI seen there
        writer.write(b"x" * 300_000)
        assert await reader.readexactly(300_000) == b"x" * 300_000
        writer.close()


async def test_bulk_both_ways_at_once_and_upstream_reset(tmp_path: Path,
                                                         backend: TaggedServer) -> None:
    port = free_port()
    bootstrap = config(port, [static_cluster("backend", [backend.port])],
                       [{"filters": [tcp_proxy("backend")]}])
    async with running(tmp_path, bootstrap) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.readline() == b"a \n"
        payload = bytes(range(251)) * 80_000  # ~20 MB echoed while still being sent

        async def send() -> None:
            for offset in range(0, len(payload), 1 << 16):
                writer.write(payload[offset: offset + (1 << 16)])
                await writer.drain()
            writer.write_eof()

        async with asyncio.timeout(60):
            sending = asyncio.create_task(send())
            echoed = await reader.read(-1)
            await sending
        assert echoed == payload
        writer.close()
        assert server.stats.counter("tcp.tcp.downstream_cx_rx_bytes_total").value == \
            len(payload)
    # The upstream resets: the downstream is closed too.
    port = free_port()

    async def resetting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()  # linger 0: an RST instead of a FIN

    upstream = await start_server(resetting)
    upstream_port = port_of(upstream)
    bootstrap = config(port, [static_cluster("backend", [upstream_port])],
                       [{"filters": [tcp_proxy("backend")]}])
    try:
        async with running(tmp_path, bootstrap):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            async with asyncio.timeout(10):
                with contextlib.suppress(ConnectionResetError):
                    assert await reader.read() == b""
            writer.close()
    finally:
        await stop_servers(upstream)


async def test_upstream_mtls_presents_the_client_certificate(tmp_path: Path) -> None:
    from tests.integration.proxy.helpers import UPSTREAM_TLS, server_ssl

    files = tls_files(tmp_path, ["backend.test", "sidecar.test"])
    backend_context = server_ssl(*files["backend.test"])
    backend_context.load_verify_locations(files["ca"][0])
    backend_context.verify_mode = ssl.CERT_REQUIRED  # mTLS: the sidecar must present a cert
    backend = TaggedServer("mtls", backend_context)
    cert, key = files["sidecar.test"]

    def origination(with_certificate: bool) -> dict[str, Any]:
        common: dict[str, Any] = {"validation_context": {
            "trusted_ca": {"filename": str(files["ca"][0])}}}
        if with_certificate:
            common["tls_certificates"] = [{"certificate_chain": {"filename": str(cert)},
                                           "private_key": {"filename": str(key)}}]
        return {"name": "tls", "typed_config": {"@type": UPSTREAM_TLS, "sni": "backend.test",
                                                "common_tls_context": common}}

    try:
        for with_certificate, expected in ((True, b"mtls backend.test\n"), (False, b"")):
            port = free_port()
            bootstrap = config(port, [static_cluster(
                "backend", [backend.port], transport_socket=origination(with_certificate))],
                [{"filters": [tcp_proxy("backend")]}])
            async with running(tmp_path, bootstrap):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                async with asyncio.timeout(10):
                    with contextlib.suppress(ConnectionResetError):
                        assert await reader.readline() == expected
                writer.close()
    finally:
        backend.stop()


async def test_connect_timeout_is_counted(tmp_path: Path) -> None:
    # A listener that never accepts, its backlog full: further SYNs are dropped and the
    # connect hangs until the cluster's connect_timeout.
    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(0)
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(stuck.getsockname())
            fillers.append(filler)
        await asyncio.sleep(0.1)
        port = free_port()
        cluster = static_cluster("backend", [stuck.getsockname()[1]])
        cluster["connect_timeout"] = "0.3s"
        bootstrap = config(port, [cluster], [{"filters": [tcp_proxy("backend")]}])
        async with running(tmp_path, bootstrap) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            async with asyncio.timeout(10):
                assert await reader.read() == b""
            writer.close()
            assert server.stats.counter(
                "cluster.backend.upstream_cx_connect_timeout").value == 1
    finally:
        for sock in [stuck, *fillers]:
            sock.close()


async def test_tls_handshake_failure_is_a_connect_failure(tmp_path: Path,
                                                          backend: TaggedServer) -> None:
    from tests.integration.proxy.helpers import UPSTREAM_TLS, server_ssl

    files = tls_files(tmp_path, ["good.test"])
    good = TaggedServer("good", server_ssl(*files["good.test"]))
    origination = {"name": "tls", "typed_config": {
        "@type": UPSTREAM_TLS, "sni": "good.test", "common_tls_context": {
            "validation_context": {"trusted_ca": {"filename": str(files["ca"][0])}}}}}
    port = free_port()
    # `backend` speaks plain text: the TLS handshake with it fails, and tcp_proxy moves on.
    cluster = static_cluster("mixed", [backend.port, good.port], transport_socket=origination)
    bootstrap = config(port, [cluster],
                       [{"filters": [tcp_proxy("mixed", max_connect_attempts=2)]}])
    try:
        async with running(tmp_path, bootstrap) as server:
            for _ in range(4):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                async with asyncio.timeout(10):
                    assert await reader.readline() == b"good good.test\n"
                writer.close()
            assert server.stats.counter("cluster.mixed.upstream_cx_connect_fail").value >= 2
    finally:
        good.stop()
