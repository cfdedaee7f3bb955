"""Worker stats merging and the parent <-> worker framing (no processes)."""

from __future__ import annotations

import asyncio

from proxy.stats import Stats
from proxy.workers import encode, merge_cluster_views, merge_snapshots, read_message


def worker_stats(connections: int) -> dict:
    stats = Stats()
    stats.counter("cluster.web.upstream_cx_total").inc(connections)
    stats.gauge("listener.127.0.0.1_80.downstream_cx_active").set(connections)
    stats.gauge("cluster.web.membership_total").set(3)  # the same in every worker
    stats.gauge("cluster.web.circuit_breakers.default.cx_open").set(0)
    stats.histogram("cluster.web.upstream_cx_connect_ms").record(2.0)
    return stats.snapshot()


def test_counters_and_activity_sum_state_gauges_do_not() -> None:
    merged = merge_snapshots([worker_stats(2), worker_stats(5)])
    assert merged.counter("cluster.web.upstream_cx_total").value == 7
    assert merged.gauge("listener.127.0.0.1_80.downstream_cx_active").value == 7
    assert merged.gauge("cluster.web.membership_total").value == 3
    assert merged.histogram("cluster.web.upstream_cx_connect_ms").samples == 2


async def test_framing_round_trip_split_in_tiny_pieces() -> None:
    message = {"op": "apply", "type_url": "t", "resources": ["x" * 1000]}
    reader = asyncio.StreamReader()
    data = encode(message) + encode({"op": "ready"})
    for index in range(len(data)):
        reader.feed_data(data[index:index + 1])
    reader.feed_eof()
    assert await read_message(reader) == message
    assert await read_message(reader) == {"op": "ready"}
    assert await read_message(reader) is None


def test_cluster_views_sum_host_activity() -> None:
    def view(active: int, total: int) -> dict:
        return {"cluster_statuses": [{"name": "web", "host_statuses": [{
            "address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}},
            "health": "healthy", "active_connections": active, "active_requests": 0,
            "stats": {"cx_total": total}}]}]}

    merged = merge_cluster_views([view(1, 10), view(2, 5)])
    [host] = merged["cluster_statuses"][0]["host_statuses"]
    assert (host["active_connections"], host["stats"]["cx_total"]) == (3, 15)
    assert merge_cluster_views([]) == {"cluster_statuses": []}
