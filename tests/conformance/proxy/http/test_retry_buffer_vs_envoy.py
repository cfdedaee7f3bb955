"""Differential: retries of requests with large bodies, Envoy vs `pointsman proxy`.

The router keeps the request body for a retry up to the buffer limit (the route's, else the
virtual host's per_request_buffer_limit_bytes, which replace the listener's
per_connection_buffer_limit_bytes, 1 MiB by default, even when larger); past it Envoy gives up
retrying that request (`retry_or_shadow_abandoned`). The backend answers 503 to the first
request on each path (after reading the whole body) and 200 afterwards, reporting the body
length it received. A 200 KB POST on each listener of LIMITS:

- default limit, a route limit of 4 MiB (over a listener's 64 KiB, or a vhost's 64 KiB): the
  POST is retried and succeeds; the backend saw the body twice.
- listener per_connection_buffer_limit_bytes 64 KiB, or a route or vhost limit of 64 KiB: the
  same POST is not retried; the 503 goes back to the client.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
import pytest

from tests.integration.proxy.http.clients import H1Client
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port
from tests.support.proxies import AdminProxy
from tests.support.tcp_servers import port_of, start_server, stop_servers

pytestmark = pytest.mark.conformance

HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
       ".HttpConnectionManager")
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
BODY = b"b" * 200_000


class FailFirstBackend:
    """HTTP/1.1: reads each request in full, answers 503 to the first on a path, else 200 with
    {"length": N}; `lengths[path]` lists the body sizes received."""

    def __init__(self) -> None:
        self.lengths: dict[str, list[int]] = {}
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self.server = await start_server(self._serve)
        return port_of(self.server)

    async def close(self) -> None:
        assert self.server is not None
        await stop_servers(self.server)
        for writer in list(self.writers):
            writer.transport.abort()
        await asyncio.sleep(0.01)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        connection = h11.Connection(h11.SERVER)
        try:
            while True:
                path, length = await self._read(connection, reader)
                if path is None:
                    return
                seen = self.lengths.setdefault(path, [])
                seen.append(length)
                status = 503 if len(seen) == 1 else 200
                body = json.dumps({"length": length}).encode()
                writer.write(connection.send(h11.Response(status_code=status, headers=[
                    ("content-length", str(len(body)))])))
                writer.write(connection.send(h11.Data(data=body)))
                writer.write(connection.send(h11.EndOfMessage()))
                await writer.drain()
                connection.start_next_cycle()
        except (ConnectionError, h11.ProtocolError):
            return
        finally:
            self.writers.discard(writer)
            writer.close()

    @staticmethod
    async def _read(connection: h11.Connection, reader: asyncio.StreamReader
                    ) -> tuple[str | None, int]:
        path, length = None, 0
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                if not data:
                    return None, 0
                connection.receive_data(data)
            elif isinstance(event, h11.Request):
                path = event.target.decode()
            elif isinstance(event, h11.Data):
                length += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return path, length


def _listener(name: str, port: int, *, route_limit: int | None = None,
              vhost_limit: int | None = None, **extra: Any) -> dict[str, Any]:
    route: dict[str, Any] = {"match": {"prefix": "/"}, "route": {
        "cluster": "backend", "retry_policy": {
            "retry_on": "5xx", "num_retries": 1,
            "retry_back_off": {"base_interval": "0.01s", "max_interval": "0.02s"}}}}
    vhost: dict[str, Any] = {"name": "all", "domains": ["*"], "routes": [route]}
    if route_limit is not None:
        route["per_request_buffer_limit_bytes"] = route_limit
    if vhost_limit is not None:
        vhost["per_request_buffer_limit_bytes"] = vhost_limit
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1",
                                                         "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {"@type": HCM, "stat_prefix": name, "http_filters": [ROUTER],
                                 "route_config": {"virtual_hosts": [vhost]}}}]}],
            **extra}


# Listener -> what it sets; the 200 KB POST is retried only where the effective limit fits it.
LIMITS: dict[str, dict[str, int]] = {
    "default": {},
    "small": {"per_connection_buffer_limit_bytes": 65536},
    # per_request_buffer_limit_bytes replaces the listener's limit, larger or smaller
    "route_small": {"route_limit": 65536},
    "route_large": {"route_limit": 4 * 1024 * 1024, "per_connection_buffer_limit_bytes": 65536},
    "vhost_small": {"vhost_limit": 65536},
    "route_over_vhost": {"route_limit": 4 * 1024 * 1024, "vhost_limit": 65536},
}


def _bootstrap(ports: dict[str, int], backend_port: int) -> dict[str, Any]:
    return {"static_resources": {
        "listeners": [_listener(name, ports[name], **extra) for name, extra in LIMITS.items()],
        "clusters": [{"name": "backend", "type": "STATIC", "connect_timeout": "2s",
                      "load_assignment": {"cluster_name": "backend", "endpoints": [{
                          "lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                              "address": "127.0.0.1", "port_value": backend_port}}}}]}]}}]}}


async def _post(port: int, path: str) -> tuple[int, bytes]:
    async with H1Client(port) as client:
        response = await client.request("POST", path, body=BODY)
    return response.status, response.body


async def _run(proxy: AdminProxy, ports: dict[str, int], backend: FailFirstBackend,
               tag: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        answers = {name: await _post(ports[name], f"/{tag}/{name}") for name in LIMITS}
    stats = {name: await asyncio.to_thread(proxy.stat, f"cluster.backend.{name}")
             for name in ("upstream_rq_retry", "retry_or_shadow_abandoned",
                          "upstream_rq_completed", "upstream_rq_503", "upstream_rq_200")}
    return {**answers, "stats": stats,
            "seen": {kind: backend.lengths.get(f"/{tag}/{kind}") for kind in LIMITS}}


async def test_large_body_retries_follow_the_buffer_limit_like_envoy() -> None:
    backend = FailFirstBackend()
    backend_port = await backend.start()
    envoy_ports = {name: free_port() for name in LIMITS}
    ours_ports = {name: free_port() for name in LIMITS}
    envoy = Envoy(_bootstrap(envoy_ports, backend_port), name="envoy-retry-buffer")
    ours = Pointsman(_bootstrap(ours_ports, backend_port), name="pm-retry-buffer")
    try:
        await asyncio.to_thread(envoy.wait_ready)
        await asyncio.to_thread(ours.wait_ready)
        expected = await _run(envoy, envoy_ports, backend, "envoy")
        actual = await _run(ours, ours_ports, backend, "ours")
    finally:
        envoy.stop()
        ours.stop()
        await backend.close()
    assert expected["default"] == (200, b'{"length": 200000}')
    retried, abandoned = ["default", "route_large", "route_over_vhost"], \
        ["small", "route_small", "vhost_small"]
    assert expected["seen"] == {**{name: [200_000, 200_000] for name in retried},
                                **{name: [200_000] for name in abandoned}}
    assert {expected[name][0] for name in abandoned} == {503}
    # A retried response charges no code stats: completed counts the answers sent back.
    assert expected["stats"] == {"upstream_rq_retry": 3, "retry_or_shadow_abandoned": 3,
                                 "upstream_rq_completed": 6, "upstream_rq_503": 3,
                                 "upstream_rq_200": 3}
    assert actual == expected
