"""Prometheus exposition with Envoy's tag extraction (well_known_names.cc)."""

from __future__ import annotations

from proxy.observability.prometheus import extract_tags, render
from proxy.stats import Stats


def test_envoy_tag_extraction_examples() -> None:
    assert extract_tags("cluster.backend.upstream_rq_total") == (
        "cluster.upstream_rq_total", (("envoy_cluster_name", "backend"),))
    assert extract_tags("cluster.backend.upstream_rq_200") == (
        "cluster.upstream_rq", (("envoy_response_code", "200"), ("envoy_cluster_name", "backend")))
    assert extract_tags("http.ingress.downstream_rq_2xx") == (
        "http.downstream_rq_xx", (("envoy_response_code_class", "2"),
                                  ("envoy_http_conn_manager_prefix", "ingress")))
    assert extract_tags("listener.127.0.0.1_10000.downstream_cx_total") == (
        "listener.downstream_cx_total", (("envoy_listener_address", "127.0.0.1_10000"),))
    assert extract_tags("tcp.db.downstream_cx_total") == (
        "tcp.downstream_cx_total", (("envoy_tcp_prefix", "db"),))
    assert extract_tags("server.live") == ("server.live", ())
    assert extract_tags("http.ingress.rds.local_route.version") == (
        "http.rds.version", (("envoy_http_conn_manager_prefix", "ingress"),
                             ("envoy_rds_route_config", "local_route")))


def test_render_groups_families_and_labels() -> None:
    stats = Stats()
    stats.counter("cluster.a.upstream_rq_total").inc(3)
    stats.counter("cluster.b.upstream_rq_total").inc(4)
    stats.gauge("cluster.a.membership_healthy").set(2)
    stats.histogram("cluster.a.upstream_rq_time").record(7)
    text = render(stats)
    lines = text.splitlines()
    assert lines.count("# TYPE envoy_cluster_upstream_rq_total counter") == 1
    assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="a"} 3' in lines
    assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="b"} 4' in lines
    assert 'envoy_cluster_membership_healthy{envoy_cluster_name="a"} 2' in lines
    assert 'envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="a",le="10"} 1' in lines
    assert 'envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="a",le="5"} 0' in lines
    assert 'envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="a",le="+Inf"} 1' in lines
    assert 'envoy_cluster_upstream_rq_time_sum{envoy_cluster_name="a"} 7' in lines
    assert "# TYPE envoy_cluster_upstream_rq_time histogram" in lines


def test_label_values_are_escaped_and_empty_store_is_empty() -> None:
    stats = Stats()
    stats.counter('cluster.we"ird.upstream_rq_total').inc()
    assert 'envoy_cluster_name="we\\"ird"' in render(stats)
    assert render(Stats()) == ""
