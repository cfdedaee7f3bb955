"""Differential: how a downstream HTTP/1.1 connection ends after the last response, Envoy vs
`pointsman proxy`, one bootstrap.

- HCM delayed_close_timeout (default 1 s; 0 turns it off): after the response that closes the
  connection, the socket stays open that long for the client to close first.
- A request that closes the connection is the last one read: bytes after it are not parsed
  (pipelined garbage must not turn its 200 into a 400).
- A response that starts before its request ended says `connection: close`.
- A proxied response to a request that asked to close, read to its end, closes at once (Envoy
  doEndStream: no race to guard against); local replies keep the delay.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.support.bootstraps import http_bootstrap, static_cluster
from tests.support.differential import envoy_and_pointsman
from tests.support.envoy import Envoy
from tests.support.http_backends import EchoBackend
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance

REQUESTS = {
    "connection close": b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    "smuggling shape": (b"GET / HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\n"
                        b"transfer-encoding: chunked\r\n\r\n"),
    "HTTP/1.0": b"GET / HTTP/1.0\r\n\r\n",
    "bytes after the last request": (b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"
                                     b"NOT HTTP AT ALL\r\n\r\n"),
}


def bootstrap(port: int, delayed_close: str | None) -> dict[str, Any]:
    routes = [{"match": {"prefix": "/"}, "direct_response": {
        "status": 200, "body": {"inline_string": "ok"}}}]
    options = {} if delayed_close is None else {"delayed_close_timeout": delayed_close}
    return http_bootstrap(port, routes, [], stat_prefix="close", **options)


async def _until_closed(port: int, request: bytes) -> tuple[bytes, float]:
    """The status line, and how long the proxy kept the connection after answering."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(5):
            status = await reader.readline()
            answered = time.monotonic()
            while await reader.read(65536):
                pass
        return status.split(b" ")[1], time.monotonic() - answered
    finally:
        writer.close()


@pytest.mark.parametrize("delayed_close", [None, "0s"])
async def test_connection_end_like_envoy(delayed_close: str | None) -> None:
    seen = []
    with envoy_and_pointsman(lambda port: bootstrap(port, delayed_close),
                             f"close-{delayed_close}") as ports:
        for port in ports:
            results = await asyncio.gather(*(_until_closed(port, request)
                                             for request in REQUESTS.values()))
            # kept open for the client ~1 s (delayed close), or closed at once
            seen.append({name: (status, held > 0.7) for name, (status, held)
                         in zip(REQUESTS, results, strict=True)})
    envoy, ours = seen
    held = delayed_close is None
    assert envoy == {"connection close": (b"200", held), "smuggling shape": (b"400", held),
                     "HTTP/1.0": (b"426", held), "bytes after the last request": (b"200", held)}
    assert ours == envoy


async def _head_of_early_answer(port: int) -> list[bytes]:
    """The status line and any Connection header of a response sent while the request body
    is still incomplete (8 of its 10 bytes never come)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nab")
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
        return [line for line in head.split(b"\r\n")
                if line.startswith(b"HTTP/") or line.lower().startswith(b"connection")]
    finally:
        writer.close()


async def test_an_answer_before_the_request_ends_says_connection_close_like_envoy() -> None:
    # conn_manager_impl encodeHeaders: the HTTP/1.1 connection will not wait for the rest of
    # the request; downstream_rq_response_before_rq_complete counts it.
    stat = "http.close.downstream_rq_response_before_rq_complete"
    seen = []
    envoy_port, ours_port = free_port(), free_port()
    envoy = Envoy(bootstrap(envoy_port, None), name="envoy-early-answer")
    ours = Pointsman(bootstrap(ours_port, None), name="pm-early-answer")
    try:
        for proxy, port in ((envoy, envoy_port), (ours, ours_port)):
            await asyncio.to_thread(proxy.wait_ready)
            seen.append((await _head_of_early_answer(port), proxy.stat(stat)))
    finally:
        envoy.stop()
        ours.stop()
    assert seen[0] == ([b"HTTP/1.1 200 OK", b"connection: close"], 1)
    assert seen[1] == seen[0]


async def test_a_proxied_answer_to_connection_close_closes_at_once_like_envoy() -> None:
    with EchoBackend("close") as backend:
        def proxied(port: int) -> dict[str, Any]:
            return http_bootstrap(port, [{"match": {"prefix": "/"}, "route": {"cluster": "b"}}],
                                  [static_cluster("b", [backend.port])], stat_prefix="close")

        seen = []
        with envoy_and_pointsman(proxied, "close-proxied") as ports:
            for port in ports:
                status, held = await _until_closed(port, REQUESTS["connection close"])
                seen.append((status, held < 0.3))
    assert seen[0] == (b"200", True)
    assert seen[1] == seen[0]
