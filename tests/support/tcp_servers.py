"""Small asyncio TCP servers for tests, and a stop that leaves no socket behind.

Python 3.11's asyncio.Server has two gaps that leak sockets when a client (an Envoy health
check, say) connects while the test tears down:

- close() racing an accept: the accept callback hands the new socket to a task; if close() runs
  before that task's first step, the transport constructor fails on Server._attach's assertion
  and the half-built transport is left to the garbage collector, which reports an unclosed
  transport and socket later, inside whichever test is running then.
- wait_closed() returns at once after close() and does not wait for accepted connections
  (3.12 waits for them).

stop_servers() stops listening first, lets accepts already made become transports, then closes
the server and every connection it accepted, and waits until each has called connection_lost.
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

_POLL = 0.01
_ABORT_AFTER = 100  # polls: a second to close gracefully

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None]

_connections: weakref.WeakKeyDictionary[asyncio.Server, set[asyncio.StreamWriter]] = (
    weakref.WeakKeyDictionary())


async def start_server(handler: Handler, host: str = "127.0.0.1", port: int = 0,
                       **kwargs: Any) -> asyncio.Server:
    """asyncio.start_server, remembering each accepted connection so stop_servers can end it."""
    accepted: set[asyncio.StreamWriter] = set()

    async def remembered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.add(writer)
        result = handler(reader, writer)
        if inspect.isawaitable(result):
            await result

    server = await asyncio.start_server(remembered, host, port, **kwargs)
    _connections[server] = accepted
    return server


async def start_servers(handler: Handler, count: int, **kwargs: Any) -> list[asyncio.Server]:
    return [await start_server(handler, **kwargs) for _ in range(count)]


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


async def stop_servers(*servers: asyncio.Server, grace: float = 5.0) -> None:
    """Stop listening, close every accepted connection and wait for their connection_lost."""
    loop = asyncio.get_running_loop()
    for server in servers:
        for sock in server.sockets:
            loop.remove_reader(sock.fileno())
    await asyncio.sleep(0.01)  # accepts already made run their first step while still open
    for server in servers:
        server.close()
    for attempt in range(int(grace / _POLL)):
        if not any(_open_connections(server) for server in servers):
            return
        for writer in (w for server in servers for w in _connections.get(server, ())):
            if attempt < _ABORT_AFTER:
                writer.close()
            else:  # TLS close_notify unanswered, or bytes the peer never reads
                writer.transport.abort()
        await asyncio.sleep(_POLL)
    raise TimeoutError(f"connections still open {grace} s after stopping {servers}")


def _open_connections(server: asyncio.Server) -> int:
    # Server._active_count: transports attached and not yet through connection_lost.
    return int(getattr(server, "_active_count", 0))
