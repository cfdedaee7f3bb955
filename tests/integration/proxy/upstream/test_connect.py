"""Upstream connects and DNS on loopback: success, refusal, connect_timeout, STRICT_DNS."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest

from proxy.model.cluster import DnsLookupFamily, translate_cluster
from proxy.stats import Stats
from proxy.upstream.connect import ConnectTimeout, connect, connect_host, resolve
from proxy.upstream.manager import ClusterManager
from tests.support.ports import free_port
from tests.support.tcp_servers import port_of, start_server
from tests.unit.proxy.upstream.builders import cluster, cluster_proto, resolved, runtime

C = "cluster.backend."


async def test_connect_success_and_refusal_are_accounted() -> None:
    server = await start_server(lambda r, w: w.close())
    port = port_of(server)
    async with server:
        rt, stats = runtime(cluster())
        rt.set_endpoints([resolved(port), resolved(free_port())])
        good, bad = rt.hosts
        sock = await connect_host(rt, good)
        try:
            assert not sock.getblocking()
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        finally:
            sock.close()
            rt.connection_closed(good, local=True, with_active_request=False)
        with pytest.raises(ConnectionRefusedError):
            await connect_host(rt, bad)
        assert stats.counter(C + "upstream_cx_total").value == 2
        assert stats.counter(C + "upstream_cx_connect_fail").value == 1
        assert stats.gauge(C + "upstream_cx_active").value == 0


async def test_connect_timeout_when_the_syn_is_never_answered() -> None:
    # A listener with a full accept queue drops further SYNs (Linux), so connect() hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        await asyncio.sleep(0.1)
        with pytest.raises(ConnectTimeout):
            await connect("127.0.0.1", port, 0.3)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_resolve_localhost_by_family() -> None:
    assert await resolve("localhost", 80, DnsLookupFamily.V4_ONLY) == ["127.0.0.1"]
    addresses = await resolve("127.0.0.1", 80, DnsLookupFamily.AUTO)
    assert addresses == ["127.0.0.1"]


async def test_strict_dns_cluster_resolves_into_hosts() -> None:
    config = translate_cluster(cluster_proto(
        type="STRICT_DNS", dns_lookup_family="V4_ONLY", dns_refresh_rate="0.1s",
        load_assignment={"cluster_name": "backend", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "localhost",
                                                         "port_value": 8080}}}}]}]}))
    manager = ClusterManager(Stats(), rng=random.Random(1))
    manager.update([config])
    assert not manager.all_initialized()
    await manager.start()
    try:
        await asyncio.wait_for(manager.wait_initialized(), 10)
        rt = manager.get("backend")
        assert rt is not None
        assert [(h.address, h.port, h.hostname) for h in rt.hosts] == [
            ("127.0.0.1", 8080, "localhost")]
        assert rt.choose_host() is rt.hosts[0]
    finally:
        await manager.close()


async def test_dns_failure_keeps_resolvable_targets_and_initializes() -> None:
    config = translate_cluster(cluster_proto(
        type="STRICT_DNS", dns_lookup_family="V4_ONLY", dns_refresh_rate="0.1s",
        load_assignment={"cluster_name": "backend", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": name,
                                                         "port_value": 8080}}}}
            for name in ("nonexistent.invalid", "bad..name", "localhost")]}]}))
    manager = ClusterManager(Stats(), rng=random.Random(1))
    manager.update([config])
    await manager.start()
    try:
        await asyncio.wait_for(manager.wait_initialized(), 10)
        rt = manager.get("backend")
        assert rt is not None
        assert [h.hostname for h in rt.hosts] == ["localhost"]
        assert rt.stats.counter("cluster.backend.update_failure").value >= 1
    finally:
        await manager.close()
