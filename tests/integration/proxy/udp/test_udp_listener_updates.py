"""UDP listeners through the listener manager (LDS-shaped updates), over loopback: add,
update in place (new datagrams go to the new generation, the old one's sessions end at once,
as Envoy's do), move to another port, remove."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from proxy.context import NodeInfo, ServerContext
from proxy.listeners.manager import ListenerManager
from proxy.model.listener import Listener
from proxy.stats import Stats
from proxy.upstream.manager import ClusterManager
from tests.support.ports import free_port
from tests.support.udp_servers import NamedUdpBackend, udp_proxy_listener
from tests.unit.proxy.listener_helpers import build
from tests.unit.proxy.upstream.builders import cluster


@pytest.fixture
def backend() -> Iterator[NamedUdpBackend]:
    server = NamedUdpBackend("a")
    yield server
    server.stop()


@pytest.fixture
async def context(backend: NamedUdpBackend) -> AsyncIterator[ServerContext]:
    stats = Stats()
    clusters = ClusterManager(stats)
    clusters.update([cluster(type="STATIC", load_assignment={
        "cluster_name": "backend", "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1",
                                           "port_value": backend.port}}}}]}]})])
    yield ServerContext(stats, NodeInfo(), clusters, {}, {})  # type: ignore[arg-type]
    await clusters.close()


def udp_listener(port: int, stat_prefix: str) -> Listener:
    return build(udp_proxy_listener("dns", port, {"stat_prefix": stat_prefix,
                                                  "cluster": "backend"}))


async def ask(client: socket.socket, port: int, ident: int, wait: float = 5.0) -> str:
    """One query from a non-blocking client socket, through the running loop."""
    loop = asyncio.get_running_loop()
    await loop.sock_sendto(client, ident.to_bytes(2, "big") + b"query", ("127.0.0.1", port))
    async with asyncio.timeout(wait):
        data = await loop.sock_recv(client, 2048)
    return data[2:].decode()


def client_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def value(context: ServerContext, name: str) -> Any:
    if name.endswith("_active"):
        return context.stats.gauge(name).value
    return context.stats.counter(name).value


async def test_add_update_move_and_remove_a_udp_listener(context: ServerContext) -> None:
    port, other_port = free_port(), free_port()
    manager = ListenerManager(context, drain_timeout=0.5)
    client = client_socket()
    try:
        manager.apply({"dns": udp_listener(port, "v1")})
        assert await ask(client, port, 1) == "a"
        assert value(context, "udp.v1.downstream_sess_active") == 1

        manager.apply({"dns": udp_listener(port, "v2")})  # in place: same socket
        assert value(context, "listener_manager.listener_modified") == 1
        assert await ask(client, port, 2) == "a"  # the same client, now a v2 session
        assert value(context, "udp.v2.downstream_sess_total") == 1
        assert value(context, "udp.v1.downstream_sess_rx_datagrams") == 1
        assert value(context, "udp.v1.downstream_sess_active") == 0  # ended by the update

        manager.apply({"dns": udp_listener(other_port, "v3")})  # moved: a new socket
        assert await ask(client, other_port, 3) == "a"
        assert value(context, "udp.v3.downstream_sess_total") == 1
        await asyncio.sleep(0)  # the old socket closes as its listener stops
        with pytest.raises((ConnectionRefusedError, TimeoutError)):
            await ask(client, port, 4, wait=1.0)  # nobody on the old port any more

        manager.apply({})
        assert value(context, "listener_manager.listener_removed") == 1
        with pytest.raises((ConnectionRefusedError, TimeoutError)):
            await ask(client, other_port, 5, wait=1.0)
        assert value(context, "udp.v2.downstream_sess_active") == 0
    finally:
        client.close()
        await manager.close()


async def test_a_session_ends_when_its_host_leaves_the_cluster(
        context: ServerContext, backend: NamedUdpBackend) -> None:
    port = free_port()
    manager = ListenerManager(context)
    client = client_socket()
    try:
        manager.apply({"dns": udp_listener(port, "v1")})
        assert await ask(client, port, 1) == "a"
        assert value(context, "udp.v1.downstream_sess_active") == 1
        other = NamedUdpBackend("b")
        try:
            context.cluster_manager.update([cluster(type="STATIC", load_assignment={
                "cluster_name": "backend", "endpoints": [{"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": "127.0.0.1",
                                                   "port_value": other.port}}}}]}]})])
            assert value(context, "udp.v1.downstream_sess_active") == 0  # a's session ended
            assert await ask(client, port, 2) == "b"  # the next datagram opens one to b
        finally:
            other.stop()
    finally:
        client.close()
        await manager.close()
