"""Request latency histograms with Envoy's names, units and buckets, for /stats/prometheus.

Envoy (docs: configuration/http/http_conn_man/stats, configuration/upstream/cluster_manager/
cluster_stats): `http.<stat_prefix>.downstream_rq_time`, "total time for request and response
(milliseconds)", recorded when a stream completes; `cluster.<name>.upstream_rq_time`,
"request time milliseconds", recorded when an upstream response is complete. Buckets are
Envoy's defaults (proxy.stats.DEFAULT_BUCKETS). The histogram objects are looked up once per
name and kept, so a request costs a dict lookup, a bisect and three adds.
"""

from __future__ import annotations

from proxy.stats import Histogram, Stats


class LatencyHistograms:
    __slots__ = ("_downstream", "_stats", "_upstream")

    def __init__(self, stats: Stats) -> None:
        self._stats = stats
        self._downstream: dict[str, Histogram] = {}
        self._upstream: dict[str, Histogram] = {}

    def __repr__(self) -> str:
        return (f"LatencyHistograms(downstream={sorted(self._downstream)}, "
                f"upstream={sorted(self._upstream)})")

    def downstream(self, stat_prefix: str, seconds: float) -> None:
        histogram = self._downstream.get(stat_prefix)
        if histogram is None:
            histogram = self._downstream[stat_prefix] = self._stats.histogram(
                f"http.{stat_prefix}.downstream_rq_time")
        histogram.record(seconds * 1000.0)

    def upstream(self, cluster: str, seconds: float) -> None:
        histogram = self._upstream.get(cluster)
        if histogram is None:
            histogram = self._upstream[cluster] = self._stats.histogram(
                f"cluster.{cluster}.upstream_rq_time")
        histogram.record(seconds * 1000.0)
