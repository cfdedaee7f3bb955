"""Differential: the two Envoy features a mesh hop uses so that a caller retries its callee's
connection reset (controlplane/mesh/compile/hcm.py UPSTREAM_RESET_HEADER), Envoy vs
`pointsman proxy` with one bootstrap:

- local_reply_config: a mapper with a response_flag_filter adds a header to the local reply of
  a stream with one of its flags (the 503 for an upstream that resets: UC), and to no other
  reply (a 503 the upstream sent itself);
- retry_policy retriable_headers (retry_on retriable-headers): a response carrying a matched
  header is retried, one without is not.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import pytest

from tests.integration.proxy.http.clients import H1Client
from tests.support.bootstraps import http_bootstrap, static_cluster
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port
from tests.support.proxies import AdminProxy
from tests.support.tcp_servers import port_of, start_server, stop_servers

pytestmark = pytest.mark.conformance

MARKER = "x-upstream-reset"
MAPPER = {"mappers": [{
    "filter": {"response_flag_filter": {"flags": ["UF", "UC", "UR"]}},
    "headers_to_add": [{"header": {"key": MARKER, "value": "true"},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]}]}


async def _backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """/reset: an RST after the request head (SO_LINGER 0); /marked: 503 with the marker;
    anything else: a plain 503."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ", 2)[1]
        if path.startswith(b"/reset"):
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif path.startswith(b"/marked"):
            writer.write(f"HTTP/1.1 503 Service Unavailable\r\n{MARKER}: true\r\n"
                         "content-length: 0\r\n\r\n".encode())
        else:
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _bootstrap(port: int, backend: int) -> dict[str, Any]:
    retry = {"retry_on": "retriable-headers", "num_retries": 2,
             "retriable_headers": [{"name": MARKER, "present_match": True}],
             "retry_back_off": {"base_interval": "0.01s", "max_interval": "0.02s"}}
    routes = [{"match": {"prefix": "/retry"},
               "route": {"cluster": "backend", "timeout": "5s", "retry_policy": retry,
                         "prefix_rewrite": "/marked"}},
              {"match": {"prefix": "/plain-retry"},
               "route": {"cluster": "backend", "timeout": "5s", "retry_policy": retry,
                         "prefix_rewrite": "/plain"}},
              {"match": {"prefix": "/"}, "route": {"cluster": "backend", "timeout": "5s"}}]
    return http_bootstrap(port, routes, [static_cluster("backend", [backend])],
                          stat_prefix="marker", local_reply_config=MAPPER)


async def _observe(proxy: AdminProxy, port: int) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for path in ("/reset", "/plain", "/retry", "/plain-retry"):
        before = await asyncio.to_thread(proxy.stat, "cluster.backend.upstream_rq_retry")
        async with asyncio.timeout(10), H1Client(port) as client:
            response = await client.request("GET", path)
        after = await asyncio.to_thread(proxy.stat, "cluster.backend.upstream_rq_retry")
        seen[path] = (response.status, response.header(MARKER), after - before)
    return seen


async def test_a_reset_reply_is_marked_and_a_marked_response_retried_as_envoy_does() -> None:
    backend = await start_server(_backend)
    envoy_port, ours_port = free_port(), free_port()
    envoy = Envoy(_bootstrap(envoy_port, port_of(backend)), name="envoy-reset-marker")
    ours = Pointsman(_bootstrap(ours_port, port_of(backend)), name="pm-reset-marker")
    try:
        await asyncio.to_thread(envoy.wait_ready)
        await asyncio.to_thread(ours.wait_ready)
        expected = await _observe(envoy, envoy_port)
        actual = await _observe(ours, ours_port)
    finally:
        envoy.stop()
        ours.stop()
        await stop_servers(backend)
    for case in expected:
        print(f"{case:14} envoy {expected[case]}  ours {actual[case]}")
    assert expected["/reset"] == (503, "true", 0)
    assert expected["/plain"] == (503, None, 0)
    assert expected["/retry"] == (503, "true", 2)
    assert expected["/plain-retry"] == (503, None, 0)
    assert actual == expected
