"""The accept loop backs off on EMFILE instead of spinning, and resumes when descriptors free
up (STYLE.md 8). Real sockets on loopback, with RLIMIT_NOFILE lowered for the duration."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
from collections.abc import Iterator

import pytest

from proxy.context import ServerContext
from proxy.listeners.manager import ActiveListener
from proxy.stats import Stats
from tests.unit.proxy.listener_helpers import build, chain, listener_dict


class Greeter:
    """A network filter that says hi and closes."""

    def __init__(self) -> None:
        self.served = 0
        self.first = asyncio.Event()

    async def on_new_connection(self, connection) -> None:  # type: ignore[no-untyped-def]
        self.served += 1
        self.first.set()
        connection.sock.sendall(b"hi")
        connection.sock.close()


@contextlib.contextmanager
def descriptor_limit(extra: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + extra, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_emfile_backs_off_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    model = build(listener_dict(chain("unused")))
    context = ServerContext(Stats(), None, None, None, None)  # type: ignore[arg-type]
    active = ActiveListener(model, context, reuse_port=False, drain_timeout=0)
    greeter = Greeter()
    active.current.filters = {id(model.filter_chains[0]): greeter}
    active.sock = socket.create_server(("127.0.0.1", 0))
    active.sock.setblocking(False)
    port = active.sock.getsockname()[1]
    loop = asyncio.get_running_loop()
    hogs: list[socket.socket] = []
    clients: list[socket.socket] = []
    try:
        with descriptor_limit(extra=40):
            # Use up the descriptors, then connect: accept() fails with EMFILE.
            with contextlib.suppress(OSError):
                while True:
                    hogs.append(socket.socket())
            hogs.pop().close()
            client = socket.socket()  # takes the last free descriptor
            client.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                client.connect(("127.0.0.1", port))
            clients.append(client)
            active.start()
            await asyncio.sleep(0.3)
            assert greeter.served == 0
            assert any("Too many open files" in r.getMessage() for r in caplog.records)
            for hog in hogs:  # descriptors come back: the pending connection is served
                hog.close()
            hogs.clear()
            async with asyncio.timeout(10):
                await greeter.first.wait()
            assert await loop.sock_recv(client, 2) == b"hi"
    finally:
        for sock in hogs + clients:
            sock.close()
        await active.close_now()


async def test_a_connection_cancelled_before_it_starts_still_closes_its_socket() -> None:
    """A listener closing right after an accept cancels the connection task before its first
    step: the accepted socket must be closed anyway (no ResourceWarning, no leaked fd)."""
    model = build(listener_dict(chain("unused")))
    context = ServerContext(Stats(), None, None, None, None)  # type: ignore[arg-type]
    active = ActiveListener(model, context, reuse_port=False, drain_timeout=0)
    active.current.filters = {id(model.filter_chains[0]): Greeter()}
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    try:
        accepted, peer = server.accept()
        active._spawn(accepted, peer)
        [task] = active.current.connections
        task.cancel()  # before the task ever ran
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)  # done callbacks run
        assert accepted.fileno() == -1
    finally:
        client.close()
        server.close()
