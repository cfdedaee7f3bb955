"""Prometheus exposition: naming checked against real Envoy, scraped by a real Prometheus."""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from proxy.observability.prometheus import render
from proxy.stats import Stats
from tests.conformance.proxy.observability.backends import Prometheus, prometheus_binary
from tests.conformance.proxy.observability.http_support import (
    RecordingBackend,
    bootstrap,
    cluster,
    get,
    hcm,
    http_listener,
)
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance

Series = dict[tuple[str, frozenset[tuple[str, str]]], str]
_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text: str) -> tuple[Series, dict[str, str]]:
    """(series -> value, metric family -> type) from Prometheus text format."""
    series: Series = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
            continue
        match = _LINE.match(line)
        if match:
            labels = frozenset(_LABEL.findall(match.group(2) or ""))
            series[(match.group(1), labels)] = match.group(3)
    return series, types


def envoy_stats(envoy: Envoy) -> Stats:
    """Envoy's own counters and gauges (from /stats), loaded into our store."""
    stats = Stats()
    _, body = envoy.admin("/stats?type=Counters")
    for line in body.splitlines():
        name, _, value = line.partition(": ")
        if value.isdigit():
            stats.counter(name).inc(int(value))
    _, body = envoy.admin("/stats?type=Gauges")
    for line in body.splitlines():
        name, _, value = line.partition(": ")
        if value.lstrip("-").isdigit():
            stats.gauge(name).set(int(value))
    return stats


STABLE = ("envoy_cluster_upstream_rq_total", "envoy_cluster_upstream_rq",
          "envoy_cluster_upstream_rq_xx", "envoy_http_downstream_rq_total",
          "envoy_http_downstream_rq_xx", "envoy_cluster_membership_healthy")


def test_names_and_labels_match_envoys_stats_prometheus() -> None:
    backend = RecordingBackend("backend")
    port = free_port()
    envoy = Envoy(bootstrap([http_listener("ingress", port, hcm("backend"))],
                            [cluster("backend", backend.port)]), name="envoy-prometheus")
    try:
        envoy.wait_ready()
        for _ in range(3):
            assert get(f"http://127.0.0.1:{port}/x")[0] == 200
        ours = parse_exposition(render(envoy_stats(envoy)))
        _, text = envoy.admin("/stats/prometheus")
        theirs = parse_exposition(text)
    finally:
        envoy.stop()
        backend.stop()
    compared = 0
    for (metric, labels), value in theirs[0].items():
        kind = theirs[1].get(metric)
        # Counters and gauges of the data path (server.* gauges move between the two reads).
        if kind not in ("counter", "gauge") or not metric.startswith(
                ("envoy_cluster_", "envoy_http_", "envoy_listener_")):
            continue
        assert (metric, labels) in ours[0], f"{metric}{dict(labels)} missing from ours"
        admin = ("envoy_http_conn_manager_prefix", "admin") in labels
        if metric in STABLE and not admin:  # connection and admin counters move between reads
            assert ours[0][(metric, labels)] == value, metric
        assert ours[1][metric] == kind
        compared += 1
    assert compared > 20
    assert ours[0][("envoy_cluster_upstream_rq_total",
                    frozenset({("envoy_cluster_name", "backend")}))] == "3"


class _StatsHandler(http.server.BaseHTTPRequestHandler):
    render: Callable[[], str]

    def do_GET(self) -> None:
        body = type(self).render().encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain; version=0.0.4")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def prometheus_binary_path() -> str:
    binary = prometheus_binary()
    if binary is None:
        pytest.skip("Debian's prometheus package is not installed (apt-get install prometheus)")
    return binary


@pytest.fixture
def exposition_server() -> Iterator[tuple[int, Stats]]:
    stats = Stats()
    handler = type("Handler", (_StatsHandler,), {"render": staticmethod(lambda: render(stats))})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), stats
    finally:
        server.shutdown()
        server.server_close()


def wait_for_value(prometheus: Prometheus, promql: str, expected: float,
                   timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        result = prometheus.query(promql)
        if result and float(result[0]["value"][1]) == expected:
            return
        time.sleep(0.25)
    raise AssertionError(f"{promql} = {result}, expected {expected}")


def test_real_prometheus_scrapes_our_exposition(prometheus_binary_path: str,
                                                exposition_server: tuple[int, Stats]) -> None:
    port, stats = exposition_server
    stats.counter("cluster.backend.upstream_rq_total").inc(7)
    stats.counter("http.ingress.downstream_rq_2xx").inc(5)
    for value in (3, 30, 300):
        stats.histogram("cluster.backend.upstream_rq_time").record(value)
    prometheus = Prometheus(prometheus_binary_path, [f"127.0.0.1:{port}"], "/stats/prometheus")
    try:
        prometheus.wait_ready()
        wait_for_value(prometheus, 'envoy_cluster_upstream_rq_total{envoy_cluster_name="backend"}',
                       7)
        wait_for_value(prometheus, 'envoy_http_downstream_rq_xx{envoy_response_code_class="2",'
                       'envoy_http_conn_manager_prefix="ingress"}', 5)
        wait_for_value(prometheus, 'envoy_cluster_upstream_rq_time_count', 3)
        stats.counter("cluster.backend.upstream_rq_total").inc(2)
        wait_for_value(prometheus, 'envoy_cluster_upstream_rq_total{envoy_cluster_name="backend"}',
                       9)
    finally:
        prometheus.stop()


def test_real_prometheus_counts_requests_through_the_sidecar(prometheus_binary_path: str) -> None:
    backend = RecordingBackend("backend")
    port = free_port()
    sidecar = Pointsman(bootstrap([http_listener("ingress", port, hcm("backend"))],
                                  [cluster("backend", backend.port)]), name="pointsman-prom")
    prometheus = None
    try:
        sidecar.wait_ready()
        _, text = sidecar.admin("/stats/prometheus")
        if "envoy_cluster_name=" not in text:
            pytest.skip("the admin /stats/prometheus page does not call "
                        "proxy.observability.prometheus.render yet (no Envoy tags)")
        for _ in range(5):
            assert get(f"http://127.0.0.1:{port}/x")[0] == 200
        prometheus = Prometheus(prometheus_binary_path, [f"127.0.0.1:{sidecar.admin_port}"],
                                "/stats/prometheus")
        prometheus.wait_ready()
        wait_for_value(prometheus, 'envoy_cluster_upstream_rq_total{envoy_cluster_name="backend"}',
                       5)
    finally:
        if prometheus is not None:
            prometheus.stop()
        sidecar.stop()
        backend.stop()


def _histograms(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], str]:
    """The latency histograms' series (`le` labels included), the admin listener's left out."""
    series, types = parse_exposition(text)
    wanted = ("envoy_cluster_upstream_rq_time", "envoy_http_downstream_rq_time")
    assert all(types.get(name) == "histogram" for name in wanted), types
    names = {name + suffix for name in wanted for suffix in ("_bucket", "_sum", "_count")}
    return {key: value for key, value in series.items() if key[0] in names
            and ("envoy_http_conn_manager_prefix", "admin") not in key[1]}


def test_latency_histograms_as_envoys() -> None:
    """`upstream_rq_time` and `downstream_rq_time` (ms, Envoy's buckets): the same series and
    `le` labels from Envoy and from Pointsman after the same 4 requests, each counting 4."""
    backend = RecordingBackend("backend")
    seen: dict[str, dict[tuple[str, frozenset[tuple[str, str]]], str]] = {}
    upstream_count = ("envoy_cluster_upstream_rq_time_count",
                      frozenset({("envoy_cluster_name", "backend")}))
    for kind in (Envoy, Pointsman):
        port = free_port()
        proxy = kind(bootstrap([http_listener("ingress", port, hcm("backend"))],
                               [cluster("backend", backend.port)]), name="latency")
        try:
            proxy.wait_ready()
            for _ in range(4):
                assert get(f"http://127.0.0.1:{port}/x")[0] == 200
            deadline = time.monotonic() + 20  # Envoy merges histograms on its stats flush (5 s)
            while True:
                seen[kind.__name__] = _histograms(proxy.admin("/stats/prometheus")[1])
                if seen[kind.__name__].get(upstream_count) == "4" \
                        or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        finally:
            proxy.stop()
    backend.stop()
    envoy, ours = seen["Envoy"], seen["Pointsman"]
    assert set(envoy) == set(ours)
    assert len([key for key in ours if key[0].endswith("_bucket")]) == 2 * 20  # 19 + +Inf
    for key, value in envoy.items():
        if key[0].endswith("_count") or ("le", "+Inf") in key[1]:
            assert value == ours[key] == "4", key
