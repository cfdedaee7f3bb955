"""Admin pages rendered from a fake source (no sockets)."""

from __future__ import annotations

import json
from typing import Any

from proxy.admin import route
from proxy.stats import Stats


class FakeSource:
    def __init__(self, ready: bool = True) -> None:
        self.ready = ready
        self.stats = Stats()
        self.stats.counter("cluster.backend.upstream_cx_total").inc(3)
        self.stats.gauge("listener.127.0.0.1_80.downstream_cx_active").set(2)

    def config_dump(self) -> dict[str, Any]:
        return {"configs": []}

    def clusters_view(self) -> dict[str, Any]:
        return {"cluster_statuses": [{"name": "backend", "host_statuses": [{
            "address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}},
            "weight": 2, "priority": 0, "health_flags": ["/failed_active_hc"],
            "active_connections": 1, "active_requests": 0,
            "stats": {"cx_total": 5, "rq_total": 0},
            "locality": {"region": "eu", "zone": "a"}}]}]}

    def stats_store(self) -> Stats:
        return self.stats

    def listener_addresses(self) -> dict[str, tuple[str, int]]:
        return {"l4": ("127.0.0.1", 80)}


def test_ready() -> None:
    assert route(FakeSource(True), "/ready")[0::2] == (200, "LIVE\n")
    assert route(FakeSource(False), "/ready")[0] == 503


def test_clusters_text_like_envoy() -> None:
    status, _, body = route(FakeSource(), "/clusters")
    assert status == 200
    assert "backend::10.0.0.1:80::health_flags::/failed_active_hc" in body.splitlines()
    assert "backend::10.0.0.1:80::weight::2" in body.splitlines()
    assert "backend::10.0.0.1:80::cx_total::5" in body.splitlines()
    status, _, body = route(FakeSource(), "/clusters?format=json")
    assert json.loads(body)["cluster_statuses"][0]["name"] == "backend"


def test_stats_filter_and_prometheus() -> None:
    _, _, body = route(FakeSource(), "/stats?filter=^cluster%5C.")
    assert body == "cluster.backend.upstream_cx_total: 3\n"
    text = route(FakeSource(), "/stats/prometheus")[2].splitlines()
    assert "# TYPE envoy_cluster_upstream_cx_total counter" in text
    assert 'envoy_cluster_upstream_cx_total{envoy_cluster_name="backend"} 3' in text
    assert ('envoy_listener_downstream_cx_active{envoy_listener_address="127.0.0.1_80"} 2'
            in text)


def test_stats_json() -> None:
    _, content_type, body = route(FakeSource(), "/stats?format=json&filter=cluster")
    assert content_type == "application/json"
    assert json.loads(body) == {"stats": [{"name": "cluster.backend.upstream_cx_total",
                                           "value": 3}]}


def test_unknown_path_is_404_and_listeners_page() -> None:
    assert route(FakeSource(), "/nope")[0] == 404
    assert route(FakeSource(), "/listeners")[2] == "l4::127.0.0.1:80\n"
