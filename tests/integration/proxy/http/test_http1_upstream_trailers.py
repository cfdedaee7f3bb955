"""Trailers between an HTTP/2 client and an HTTP/1.1 upstream, following the cluster's
`http_protocol_options.enable_trailers`: with it, request trailers go into the last chunk and
the upstream's trailers come back as HTTP/2 trailers; without it both are dropped."""

from __future__ import annotations

import pytest

from tests.integration.proxy.http.clients import H2Client
from tests.integration.proxy.http.harness import Sidecar, hcm, simple_routes, static_cluster
from tests.integration.proxy.http.trailer_backends import TrailerBackends

OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def _http1_options(enable_trailers: bool) -> dict[str, object]:
    http1 = {"enable_trailers": True} if enable_trailers else {}
    return {OPTIONS: {"@type": f"type.googleapis.com/{OPTIONS}",
                      "explicit_http_config": {"http_protocol_options": http1}}}


@pytest.mark.parametrize("enabled", [True, False])
async def test_trailers_to_and_from_an_http1_upstream(enabled: bool) -> None:
    backends = TrailerBackends()
    _h2_port, h1_port = await backends.start()
    cluster = static_cluster("a", [h1_port],
                             typed_extension_protocol_options=_http1_options(enabled))
    routes = simple_routes({"match": {"prefix": "/"}, "route": {"cluster": "a"}})
    try:
        async with Sidecar(hcm(routes, codec_type="HTTP2"), [cluster]) as sidecar, \
                H2Client(sidecar.port) as client:
            response = await client.request("POST", "/t", body=b"abc",
                                            trailers=[("x-client-trailer", "c")])
    finally:
        await backends.close()
    assert response.status == 200 and response.body == b"ok"
    if enabled:
        assert backends.request_trailers["/t"] == [("x-client-trailer", "c")]
        assert response.trailers == [("x-backend-trailer", "/t")]
    else:
        assert backends.request_trailers["/t"] == []
        assert response.trailers == []
