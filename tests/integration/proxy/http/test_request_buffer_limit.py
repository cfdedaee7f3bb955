"""per_request_buffer_limit_bytes (route, else virtual host) replaces the listener's
per_connection_buffer_limit_bytes for one request's body: the stream's buffer (when reading
pauses) and the retry buffer. The retry side is compared with Envoy in
tests/conformance/proxy/http/test_retry_buffer_vs_envoy.py; this checks the stream side."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.integration.proxy.http.clients import H1Client
from tests.integration.proxy.http.harness import Sidecar, hcm, static_cluster


def _routes() -> dict[str, Any]:
    return {"name": "local", "virtual_hosts": [
        {"name": "limited", "domains": ["limited.test"], "per_request_buffer_limit_bytes": 4096,
         "routes": [{"match": {"prefix": "/own"}, "route": {"cluster": "a"},
                     "per_request_buffer_limit_bytes": 12345},
                    {"match": {"prefix": "/"}, "route": {"cluster": "a"}}]},
        {"name": "plain", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "a"}}]}]}


async def _watermark_in_flight(sidecar: Sidecar, path: str, host: str) -> int:
    """The body buffer limit of the one stream in flight (the backend answers after 0.3 s)."""
    async with H1Client(sidecar.port) as client:
        request = asyncio.create_task(client.request(
            "POST", path, host=host, body=b"x" * 1000, headers=[("x-echo-delay", "0.3")]))
        while True:
            streams = [stream for handler in sidecar.filter.handlers
                       for stream in handler.streams.values()]
            if streams and streams[0].info.route is not None:
                break
            await asyncio.sleep(0.01)
        watermark = int(streams[0].body.high_watermark)
        response = await request
    assert response.status == 200
    return watermark


async def test_route_and_virtual_host_limits_replace_the_listener_limit(backends) -> None:  # type: ignore[no-untyped-def]
    backend = backends("a")
    async with Sidecar(hcm(_routes()), [static_cluster("a", [backend.port])]) as sidecar:
        async with asyncio.timeout(10):
            assert await _watermark_in_flight(sidecar, "/own", "limited.test") == 12345
            assert await _watermark_in_flight(sidecar, "/other", "limited.test") == 4096
            assert await _watermark_in_flight(sidecar, "/", "plain.test") == 1024 * 1024
