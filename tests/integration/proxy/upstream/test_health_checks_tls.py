"""HTTP health checks over the cluster's TLS transport socket (as Envoy's checks use it)."""

from __future__ import annotations

import asyncio
import random
import ssl
import subprocess
from pathlib import Path

from proxy.model.cluster import translate_cluster
from proxy.stats import Stats
from proxy.upstream.host import Health
from proxy.upstream.manager import ClusterManager
from tests.unit.proxy.upstream.builders import cluster_proto, static_endpoints


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=backend.local", "-addext", "subjectAltName=DNS:backend.local",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


async def test_http_check_over_tls_with_sni_and_ca(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    seen_sni: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: seen_sni.append(name)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    config = translate_cluster(cluster_proto(
        load_assignment={"cluster_name": "backend", "endpoints": [static_endpoints(port)]},
        transport_socket={"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/"
                     "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": "backend.local",
            "common_tls_context": {"validation_context": {
                "trusted_ca": {"inline_string": cert.read_text()}}}}},
        health_checks=[{"timeout": "1s", "interval": "0.05s", "no_traffic_interval": "0.05s",
                        "unhealthy_threshold": 1, "healthy_threshold": 1,
                        "http_health_check": {"path": "/"}}]))
    manager = ClusterManager(Stats(), rng=random.Random(1))
    manager.update([config])
    async with server:
        await manager.start()
        try:
            async with asyncio.timeout(10):
                await manager.wait_initialized()
            runtime = manager.get("backend")
            assert runtime is not None
            assert runtime.hosts[0].health is Health.HEALTHY
            assert "backend.local" in seen_sni
        finally:
            await manager.close()
