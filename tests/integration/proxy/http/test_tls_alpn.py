"""Downstream TLS: codec AUTO follows ALPN (h2 or http/1.1)."""

from __future__ import annotations

import ssl
from pathlib import Path

from tests.integration.proxy.helpers import tls_files
from tests.integration.proxy.http.clients import H1Client, H2Client
from tests.integration.proxy.http.harness import Sidecar, hcm, simple_routes, static_cluster


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


async def test_upstream_auto_config_follows_alpn(tmp_path: Path, backends) -> None:  # type: ignore[no-untyped-def]
    files = tls_files(tmp_path, ["backend.test"])
    servers = {}
    for alpn in (["h2", "http/1.1"], ["http/1.1"]):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*files["backend.test"])
        context.set_alpn_protocols(alpn)
        servers[alpn[0]] = backends(f"tls-{alpn[0]}", ssl_context=context)
    auto = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "auto_config": {}}}
    tls = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3"
                 ".UpstreamTlsContext",
        "sni": "backend.test",
        "common_tls_context": {"alpn_protocols": ["h2", "http/1.1"]}}}
    clusters = [static_cluster(name, [server.port], typed_extension_protocol_options=auto,
                               transport_socket=tls) for name, server in servers.items()]
    routes = simple_routes({"match": {"prefix": "/two"}, "route": {"cluster": "h2"}},
                           {"match": {"prefix": "/one"}, "route": {"cluster": "http/1.1"}})
    async with Sidecar(hcm(routes), clusters) as sidecar, H1Client(sidecar.port) as client:
        for path in ("/two", "/one", "/two"):
            assert (await client.request("GET", path)).status == 200
    # what each backend saw: h2 requests carry no Host header (:authority instead)
    assert [dict(seen["headers"]).get("host") for seen in servers["h2"].seen] == [None, None]
    assert dict(servers["http/1.1"].seen[0]["headers"]).get("host") == "example.com"
