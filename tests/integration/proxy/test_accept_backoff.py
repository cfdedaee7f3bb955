"""Out of descriptors (EMFILE) the accept loop refuses waiting connections cleanly with its
spare descriptor, or backs off without a spare instead of spinning, and serves again once
descriptors free up (STYLE.md 8, proxy.descriptors). Real sockets on loopback, with
RLIMIT_NOFILE lowered for the duration."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
from collections.abc import Iterator

import pytest

from proxy.context import ServerContext
from proxy.descriptors import SpareDescriptor
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


def exhaust_descriptors(port: int) -> tuple[list[socket.socket], socket.socket]:
    """Use up the descriptors, then connect with the last one: accept() fails with EMFILE."""
    hogs: list[socket.socket] = []
    with contextlib.suppress(OSError):
        while True:
            hogs.append(socket.socket())
    hogs.pop().close()
    client = socket.socket()  # takes the last free descriptor
    client.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        client.connect(("127.0.0.1", port))
    return hogs, client


def listening(spare: SpareDescriptor) -> tuple[ActiveListener, Greeter, Stats]:
    model = build(listener_dict(chain("unused")))
    stats = Stats()
    context = ServerContext(stats, None, None, None, None)  # type: ignore[arg-type]
    active = ActiveListener(model, context, reuse_port=False, drain_timeout=0, spare=spare)
    greeter = Greeter()
    active.current.filters = {id(model.filter_chains[0]): greeter}
    active.sock = socket.create_server(("127.0.0.1", 0))
    active.sock.setblocking(False)
    return active, greeter, stats


async def test_emfile_refuses_cleanly_with_the_spare_and_recovers(
        caplog: pytest.LogCaptureFixture) -> None:
    """Out of descriptors, the waiting connection is accepted with the spare descriptor and
    closed at once (the client reads EOF, not a hang), counted as Envoy's
    downstream_global_cx_overflow; once descriptors free up, connections are served again."""
    spare = SpareDescriptor()
    active, greeter, stats = listening(spare)
    assert active.sock is not None
    port = active.sock.getsockname()[1]
    loop = asyncio.get_running_loop()
    hogs: list[socket.socket] = []
    clients: list[socket.socket] = []
    try:
        with descriptor_limit(extra=40):
            hogs, client = exhaust_descriptors(port)
            clients.append(client)
            active.start()
            async with asyncio.timeout(10):
                assert await loop.sock_recv(client, 2) == b""  # refused: EOF
            assert greeter.served == 0
            scope = f"listener.{active.current.listener.stats_name}."
            assert stats.counter(scope + "downstream_global_cx_overflow").value == 1
            assert spare.held  # taken back for the next time
            assert any("Too many open files" in r.getMessage() for r in caplog.records)
            for hog in hogs:  # descriptors come back: new connections are served
                hog.close()
            hogs.clear()
            fresh = socket.create_connection(("127.0.0.1", port), timeout=10)
            clients.append(fresh)
            async with asyncio.timeout(10):
                await greeter.first.wait()
            fresh.settimeout(10)
            assert fresh.recv(2) == b"hi"
    finally:
        for sock in hogs + clients:
            sock.close()
        await active.close_now()
        spare.close()


async def test_emfile_without_a_spare_backs_off_and_recovers(
        caplog: pytest.LogCaptureFixture) -> None:
    """When the spare is not there (in use, or it could not be taken back) the accept loop
    stops reading and retries after a pause instead of spinning (STYLE.md 8); the waiting
    connection is served once descriptors free up."""
    spare = SpareDescriptor()
    spare.release()
    active, greeter, _stats = listening(spare)
    assert active.sock is not None
    port = active.sock.getsockname()[1]
    loop = asyncio.get_running_loop()
    hogs: list[socket.socket] = []
    clients: list[socket.socket] = []
    try:
        with descriptor_limit(extra=40):
            hogs, client = exhaust_descriptors(port)
            clients.append(client)
            active.start()
            await asyncio.sleep(0.3)
            assert greeter.served == 0
            assert any("retrying in" in r.getMessage() for r in caplog.records)
            for hog in hogs:
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
