"""Running a listener's listener filters on an accepted socket (the thin I/O side).

Each filter peeks with MSG_PEEK and decides with a sans-I/O parser (tls_inspector,
proxy_protocol); only proxy_protocol consumes bytes, exactly its header's. Envoy doc:
configuration/listeners/listener_filters. A connection that does not finish its listener
filters within `listener_filters_timeout` is closed, or continues with what is known when
`continue_on_listener_filters_timeout` is set.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket

from proxy.listeners import proxy_protocol, tls_inspector
from proxy.listeners.matching import ConnectionFacts
from proxy.model.listener import PROXY_PROTOCOL, TLS_INSPECTOR, Listener, ListenerFilter

_NO_PROGRESS_PAUSE = 0.005
_RECORD_OVERHEAD = 1024  # record headers around a ClientHello split over several records


class ListenerFilterRejected(Exception):
    """The connection must be closed (bad PROXY header, peer closed early)."""


async def run_listener_filters(sock: socket.socket, listener: Listener,
                               facts: ConnectionFacts) -> ConnectionFacts:
    """Apply the listener's filters in order; raises ListenerFilterRejected or TimeoutError."""
    for item in listener.listener_filters:
        facts = await _run_one(sock, item, facts)
    return facts


async def _run_one(sock: socket.socket, item: ListenerFilter,
                   facts: ConnectionFacts) -> ConnectionFacts:
    if item.kind == TLS_INSPECTOR:
        return await _inspect_tls(sock, facts, item.max_client_hello_size)
    if item.kind == PROXY_PROTOCOL:
        return await _read_proxy_header(sock, item, facts)
    raise AssertionError(f"unknown listener filter {item.kind}")  # the model rejects others


async def _inspect_tls(sock: socket.socket, facts: ConnectionFacts,
                       max_size: int) -> ConnectionFacts:
    seen = 0
    while True:
        data = await peek(sock, max_size + _RECORD_OVERHEAD, seen)
        verdict = tls_inspector.inspect(data, max_size)
        if isinstance(verdict, tls_inspector.ClientHello):
            return dataclasses.replace(facts, transport_protocol="tls",
                                       server_name=verdict.server_name,
                                       application_protocols=verdict.application_protocols)
        if isinstance(verdict, tls_inspector.NotTls):
            return facts
        if isinstance(verdict, tls_inspector.TooLarge):
            raise ListenerFilterRejected("ClientHello larger than max_client_hello_size")
        seen = len(data)


async def _read_proxy_header(sock: socket.socket, item: ListenerFilter,
                             facts: ConnectionFacts) -> ConnectionFacts:
    seen = 0
    size = 536  # section 2.2: a v2 receiver should read 536 bytes; more when TLVs need it
    while True:
        data = await peek(sock, size, seen)
        size = max(size, proxy_protocol.header_length(data))
        verdict = proxy_protocol.parse(data)
        if isinstance(verdict, proxy_protocol.ProxyHeader):
            sock.recv(verdict.length)  # consume exactly the header: it is all in the buffer
            return dataclasses.replace(
                facts,
                source=verdict.source or facts.source,
                destination=verdict.destination or facts.destination,
            )
        if isinstance(verdict, proxy_protocol.NotProxyProtocol):
            if item.allow_requests_without_proxy_protocol:
                return facts
            raise ListenerFilterRejected("no PROXY protocol header")
        if isinstance(verdict, proxy_protocol.Invalid):
            raise ListenerFilterRejected(verdict.reason)
        seen = len(data)


async def peek(sock: socket.socket, size: int, already_seen: int) -> bytes:
    """More than `already_seen` bytes waiting on `sock`, not consumed; raises
    ListenerFilterRejected when the peer closed first. A peer that stops mid-header is left
    to the listener_filters_timeout."""
    while True:
        await wait_readable(sock)
        try:
            data = sock.recv(size, socket.MSG_PEEK)
        except BlockingIOError:
            continue
        if not data:
            raise ListenerFilterRejected("peer closed before the listener filters finished")
        if len(data) > already_seen:
            return data
        # Readiness is level-triggered and the peeked bytes stay queued: pause for the rest
        # of a split header instead of spinning (rare: headers nearly always come whole).
        await asyncio.sleep(_NO_PROGRESS_PAUSE)


async def wait_readable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not ready.done():
            ready.set_result(None)

    fd = sock.fileno()
    loop.add_reader(fd, on_readable)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
