"""Downstream TLS: codec AUTO follows ALPN (h2 or http/1.1)."""

from __future__ import annotations

import ssl
from pathlib import Path

from tests.integration.http.clients import H1Client, H2Client
from tests.integration.http.harness import Sidecar, hcm, simple_routes, static_cluster
from tests.integration.proxy.helpers import tls_files


async def test_alpn_selects_the_codec(tmp_path: Path, backends) -> None:  # type: ignore[no-untyped-def]
    backend = backends("a")
    files = tls_files(tmp_path, ["localhost"])
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*files["localhost"])
    server.set_alpn_protocols(["h2", "http/1.1"])
    routes = simple_routes({"match": {"prefix": "/"}, "route": {"cluster": "a"}})

    def client(alpn: str) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(files["ca"][0]))
        context.set_alpn_protocols([alpn])
        return context

    async with Sidecar(hcm(routes), [static_cluster("a", [backend.port])],
                       server_ssl=server) as sidecar:
        async with H2Client(sidecar.port, client("h2")) as h2:
            response = await h2.request("GET", "/tls")
            assert response.status == 200
            assert response.upstream_header("x-forwarded-proto") == "https"
        async with H1Client(sidecar.port, client("http/1.1")) as h1:
            response = await h1.request("GET", "/tls")
            assert response.status == 200
            assert response.json()["backend"] == "a"
