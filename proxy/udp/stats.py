"""udp_proxy's stats, with Envoy's names (doc: configuration/listeners/udp_filters/udp_proxy,
"Statistics"; the set checked against Envoy 1.40's /stats in
tests/conformance/proxy/test_udp_proxy_vs_envoy.py).

Downstream, under `udp.<stat_prefix>.`: downstream_sess_total, downstream_sess_active (gauge),
downstream_sess_rx_bytes / _rx_datagrams / _rx_errors, downstream_sess_tx_bytes /
_tx_datagrams / _tx_errors, downstream_sess_no_route, idle_timeout,
session_filter_config_missing (always 0: no session filters).

Upstream, per cluster: `cluster.<name>.udp.sess_rx_datagrams` / `sess_rx_errors` /
`sess_rx_datagrams_dropped` (a reply over upstream_socket_config.max_rx_datagram_size) /
`sess_tx_datagrams` / `sess_tx_errors`; `sess_tunnel_success` / `_failure` /
`_buffer_overflow` stay 0 (tunneling_config is refused) but exist, as in Envoy's /stats; and
the standard `upstream_cx_tx_bytes_total`,
`upstream_cx_rx_bytes_total`, `upstream_cx_none_healthy`, `upstream_cx_overflow`. Envoy does not
count a session as an upstream connection (upstream_cx_total stays 0), nor do we.

The listener counts oversized datagrams in `listener.<name>.udp.downstream_rx_datagram_dropped`.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.stats import Counter, Stats


class UdpProxyStats:
    def __init__(self, stats: Stats, stat_prefix: str) -> None:
        self._stats = stats
        scope = f"udp.{stat_prefix}."
        self.sess_total = stats.counter(scope + "downstream_sess_total")
        self.sess_active = stats.gauge(scope + "downstream_sess_active")
        self.no_route = stats.counter(scope + "downstream_sess_no_route")
        self.rx_bytes = stats.counter(scope + "downstream_sess_rx_bytes")
        self.rx_datagrams = stats.counter(scope + "downstream_sess_rx_datagrams")
        self.rx_errors = stats.counter(scope + "downstream_sess_rx_errors")
        self.tx_bytes = stats.counter(scope + "downstream_sess_tx_bytes")
        self.tx_datagrams = stats.counter(scope + "downstream_sess_tx_datagrams")
        self.tx_errors = stats.counter(scope + "downstream_sess_tx_errors")
        self.idle_timeout = stats.counter(scope + "idle_timeout")
        stats.counter(scope + "session_filter_config_missing")
        self._clusters: dict[str, ClusterUdpStats] = {}

    def cluster(self, name: str) -> ClusterUdpStats:
        found = self._clusters.get(name)
        if found is None:
            found = self._clusters[name] = ClusterUdpStats.create(self._stats, name)
        return found


@dataclass(frozen=True, slots=True)
class ClusterUdpStats:
    rx_datagrams: Counter
    rx_errors: Counter
    rx_dropped: Counter
    tx_datagrams: Counter
    tx_errors: Counter
    rx_bytes: Counter  # upstream_cx_rx_bytes_total
    tx_bytes: Counter  # upstream_cx_tx_bytes_total

    @classmethod
    def create(cls, stats: Stats, cluster: str) -> ClusterUdpStats:
        scope = f"cluster.{cluster}."
        for unused in ("success", "failure", "buffer_overflow"):
            stats.counter(f"{scope}udp.sess_tunnel_{unused}")
        return cls(
            rx_datagrams=stats.counter(scope + "udp.sess_rx_datagrams"),
            rx_errors=stats.counter(scope + "udp.sess_rx_errors"),
            rx_dropped=stats.counter(scope + "udp.sess_rx_datagrams_dropped"),
            tx_datagrams=stats.counter(scope + "udp.sess_tx_datagrams"),
            tx_errors=stats.counter(scope + "udp.sess_tx_errors"),
            rx_bytes=stats.counter(scope + "upstream_cx_rx_bytes_total"),
            tx_bytes=stats.counter(scope + "upstream_cx_tx_bytes_total"),
        )
