"""udp_proxy, the same bootstrap to Envoy 1.40 and `pointsman proxy`, against three DNS-shaped
backends that answer with their names: the same backend for the same hash policy, the same
stats (names and values) after a scripted exchange, the same session access-log fields."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.bootstraps import static_cluster
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port
from tests.support.proxies import AdminProxy
from tests.support.udp_servers import NamedUdpBackend, query, udp_client, udp_proxy_listener

pytestmark = pytest.mark.conformance

FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
LOG_FIELDS = {
    "upstream_host": "%UPSTREAM_HOST%", "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "downstream_remote": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "downstream_local": "%DOWNSTREAM_LOCAL_ADDRESS%", "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%", "flags": "%RESPONSE_FLAGS%", "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%", "duration": "%DURATION%",
    "upstream_local": "%UPSTREAM_LOCAL_ADDRESS%", "start": "%START_TIME%",
}


@pytest.fixture(scope="module")
def backends() -> Any:
    servers = [NamedUdpBackend(name) for name in ("a", "b", "c")]
    yield servers
    for server in servers:
        server.stop()


def bootstrap(port: int, backends: list[NamedUdpBackend], config: dict[str, Any],
              **cluster: Any) -> dict[str, Any]:
    return {"static_resources": {
        "listeners": [udp_proxy_listener(
            "dns", port, {"stat_prefix": "dns", "cluster": "backends", **config},
            stat_prefix="dns_listener",
            udp_listener_config={"downstream_socket_config": {"max_rx_datagram_size": 512}})],
        "clusters": [static_cluster("backends", [b.port for b in backends], **cluster)]}}


def start(kind: str, config: dict[str, Any]) -> AdminProxy:
    if kind == "envoy":
        return Envoy(config, extra_args=("--concurrency", "1", "--file-flush-interval-msec",
                                         "100"))
    return Pointsman(config)


@pytest.mark.parametrize(("lb_policy", "policy"), [
    ("RING_HASH", {"source_ip": True}), ("MAGLEV", {"source_ip": True}),
    ("RING_HASH", {"key": "tenant-7"})])
def test_hash_policies_pick_the_backend_envoy_picks(backends: list[NamedUdpBackend],
                                                    lb_policy: str,
                                                    policy: dict[str, Any]) -> None:
    chosen: dict[str, dict[str, str]] = {}
    for kind in ("envoy", "pointsman"):
        port = free_port()
        config = bootstrap(port, backends, {"hash_policies": [policy]}, lb_policy=lb_policy)
        with start(kind, config) as proxy:
            proxy.wait_ready()
            for last in range(2, 26):
                ip = f"127.0.0.{last}"
                client = udp_client(ip)
                try:
                    chosen.setdefault(kind, {})[ip] = query(client, ("127.0.0.1", port), last)
                finally:
                    client.close()
    assert chosen["pointsman"] == chosen["envoy"]
    # source_ip spreads the IPs over every backend; a fixed key sends them all to one.
    assert len(set(chosen["envoy"].values())) == (3 if "source_ip" in policy else 1)


INPUTS = "type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3."
ROUTE = "type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.Route"


def _to(cluster: str) -> dict[str, Any]:
    return {"action": {"name": "route", "typed_config": {"@type": ROUTE, "cluster": cluster}}}


def test_matcher_routes_clients_as_envoy_does(backends: list[NamedUdpBackend]) -> None:
    """Source-IP exact map, then a source-port list under a prefix; other clients have no
    route. Each backend is its own cluster, so the answer names the cluster chosen."""
    port_rule = {"single_predicate": {"input": {"name": "port", "typed_config": {
        "@type": INPUTS + "SourcePortInput"}}, "value_match": {"suffix": "7"}}}
    matcher = {"matcher_tree": {
        "input": {"name": "ip", "typed_config": {"@type": INPUTS + "SourceIPInput"}},
        "prefix_match_map": {"map": {
            "127.0.0.2": _to("a"),
            "127.0.0.": {"matcher": {"matcher_list": {"matchers": [
                {"predicate": port_rule, "on_match": _to("b")}]}, "on_no_match": _to("c")}},
        }}}}
    answers: dict[str, list[str]] = {}
    for kind in ("envoy", "pointsman"):
        port = free_port()
        config = {"static_resources": {
            "listeners": [udp_proxy_listener("dns", port, {"stat_prefix": "dns",
                                                           "matcher": matcher})],
            "clusters": [static_cluster(b.name, [b.port]) for b in backends]}}
        with start(kind, config) as proxy:
            proxy.wait_ready()
            for ip, last_digit in (("127.0.0.2", None), ("127.0.0.3", 7),
                                   ("127.0.0.3", 8), ("127.0.1.1", 7)):
                client = _client_port_ending(ip, last_digit)
                try:
                    answers.setdefault(kind, []).append(
                        query(client, ("127.0.0.1", port), 1, timeout=1.0))
                except TimeoutError:
                    answers.setdefault(kind, []).append("no answer")
                finally:
                    client.close()
            answers[kind].append(str(proxy.stat("udp.dns.downstream_sess_no_route")))
    assert answers["envoy"] == ["a", "b", "c", "no answer", "1"]
    assert answers["pointsman"] == answers["envoy"]


def _client_port_ending(ip: str, digit: int | None) -> socket.socket:
    """A client socket on `ip` whose ephemeral port ends in `digit` (any port for None)."""
    while True:
        client = udp_client(ip)
        if digit is None or client.getsockname()[1] % 10 == digit:
            return client
        client.close()


def test_per_packet_load_balancing_as_envoy(backends: list[NamedUdpBackend]) -> None:
    """use_per_packet_load_balancing: one client's datagrams are spread round robin; the
    sessions and datagrams are counted as Envoy counts them."""
    seen: dict[str, Any] = {}
    for kind in ("envoy", "pointsman"):
        port = free_port()
        config = bootstrap(port, backends, {"use_per_packet_load_balancing": True})
        with start(kind, config) as proxy:
            proxy.wait_ready()
            client = udp_client()
            try:
                names = [query(client, ("127.0.0.1", port), ident) for ident in range(6)]
            finally:
                client.close()
            counts = {name: proxy.stat(f"udp.dns.downstream_sess_{name}")
                      for name in ("total", "active", "rx_datagrams", "tx_datagrams")}
            seen[kind] = (sorted(names), names[:3] == names[3:], counts)
    assert seen["envoy"][0] == ["a", "a", "b", "b", "c", "c"]
    assert seen["pointsman"] == seen["envoy"]


def test_an_upstream_reply_renews_the_idle_timeout_as_in_envoy() -> None:
    """idle_timeout 2 s; the backend answers after 1.2 s; the client's next query at 2.6 s
    finds its session alive only if the reply renewed it (at 1.2 s, so it expires at 3.2 s;
    unrenewed, at 2 s): 0.6 s of margin either way."""
    slow = NamedUdpBackend("slow", delay=1.2)
    totals = {}
    try:
        for kind in ("envoy", "pointsman"):
            port = free_port()
            with start(kind, bootstrap(port, [slow], {"idle_timeout": "2s"})) as proxy:
                proxy.wait_ready()
                client = udp_client()
                try:
                    began = time.monotonic()
                    query(client, ("127.0.0.1", port), 1)
                    time.sleep(max(0.0, began + 2.6 - time.monotonic()))
                    client.sendto(b"\x00\x02again", ("127.0.0.1", port))
                    proxy.wait_until(lambda proxy=proxy: proxy.stat(
                        "udp.dns.downstream_sess_rx_datagrams") == 2, 10, "second query")
                    totals[kind] = proxy.stat("udp.dns.downstream_sess_total")
                finally:
                    client.close()
    finally:
        slow.stop()
    assert totals == {"envoy": 1, "pointsman": 1}


def _udp_stats(proxy: AdminProxy) -> dict[str, str]:
    _status, body = proxy.admin("/stats")
    wanted = ("udp.", "cluster.backends.udp.", "cluster.backends.upstream_cx_",
              "listener.dns_listener.udp.")
    found = {}
    for line in body.splitlines():
        name, _, value = line.partition(": ")
        if name.startswith(wanted) and not value.startswith(("P0", "No recorded")):
            found[name] = value
    return found


def _exchange(proxy: AdminProxy, port: int) -> None:
    """Three clients, three queries each, one oversized datagram; a fourth client past the
    cluster's max_connections (3) sends two datagrams; then every session idles out."""
    clients = [udp_client() for _ in range(4)]
    try:
        for index, client in enumerate(clients[:3]):
            for ident in range(3):
                query(client, ("127.0.0.1", port), index * 10 + ident)
            if index == 0:
                client.sendto(b"\x00\x63" + b"x" * 700, ("127.0.0.1", port))
        for _ in range(2):
            clients[3].sendto(b"\x00\x64refused", ("127.0.0.1", port))
        proxy.wait_until(lambda: proxy.stat("cluster.backends.upstream_cx_overflow") == 2, 10,
                         "overflow")
    finally:
        for client in clients:
            client.close()
    proxy.wait_until(lambda: proxy.stat("udp.dns.idle_timeout") == 3, 15, "idle timeouts")


def _udp_names(stats: dict[str, str]) -> dict[str, str]:
    udp = ("udp.", "cluster.backends.udp.", "listener.dns_listener.udp.")
    return {name: value for name, value in stats.items() if name.startswith(udp)}


def _udp_prometheus(proxy: AdminProxy) -> set[str]:
    """The udp_proxy samples of /stats/prometheus (`envoy_udp_...{envoy_udp_prefix="dns"}`,
    `envoy_cluster_udp_...`)."""
    _status, body = proxy.admin("/stats/prometheus")
    return {line for line in body.splitlines()
            if line.startswith(("envoy_udp_", "envoy_cluster_udp_"))}


def _non_zero(stats: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in stats.items() if value != "0"}


def test_stats_after_a_scripted_exchange_match_envoy(backends: list[NamedUdpBackend]) -> None:
    stats, prometheus = {}, {}
    for kind in ("envoy", "pointsman"):
        port = free_port()
        breakers = {"thresholds": [{"max_connections": 3}]}
        config = bootstrap(port, backends, {"idle_timeout": "2s"}, circuit_breakers=breakers)
        with start(kind, config) as proxy:
            proxy.wait_ready()
            _exchange(proxy, port)
            time.sleep(0.3)  # let late counters settle
            stats[kind] = _udp_stats(proxy)
            prometheus[kind] = _udp_prometheus(proxy)
    assert stats["envoy"]["udp.dns.downstream_sess_total"] == "5"  # refused attempts count
    assert stats["envoy"]["udp.dns.downstream_sess_rx_datagrams"] == "9"  # they do not
    assert stats["envoy"]["listener.dns_listener.udp.downstream_rx_datagram_dropped"] == "1"
    assert _udp_names(stats["pointsman"]) == _udp_names(stats["envoy"])  # zeros included
    # Envoy creates every cluster stat at zero; the non-zero ones must agree (a session is not
    # an upstream connection: upstream_cx_total and _active stay 0 in both).
    assert _non_zero(stats["pointsman"]) == _non_zero(stats["envoy"])
    assert prometheus["pointsman"] == prometheus["envoy"]  # names, tags and values


def test_session_access_log_fields_match_envoy(backends: list[NamedUdpBackend],
                                               tmp_path: Path) -> None:
    """One session of two queries, and one the circuit breaker (max_connections 1) refuses:
    Envoy logs both, the refused one with UO and no upstream."""
    records = {}
    for kind in ("envoy", "pointsman"):
        port = free_port()
        path = tmp_path / f"{kind}.log"
        log = [{"name": "file", "typed_config": {"@type": FILE_LOG, "path": str(path),
                                                 "log_format": {"json_format": LOG_FIELDS}}}]
        config = bootstrap(port, backends[:1], {"idle_timeout": "0.5s", "access_log": log},
                           circuit_breakers={"thresholds": [{"max_connections": 1}]})
        with start(kind, config) as proxy:
            proxy.wait_ready()
            served, refused = udp_client(), udp_client()
            try:
                for ident in range(2):
                    query(served, ("127.0.0.1", port), ident)
                refused.sendto(b"\x00\x09refused", ("127.0.0.1", port))
                names = {served.getsockname(): "served", refused.getsockname(): "refused"}
            finally:
                served.close()
                refused.close()
            proxy.wait_until(lambda path=path: len(path.read_text().splitlines()) == 2
                             if path.exists() else False, 15, "access log")
        records[kind] = sorted((_normalized(json.loads(line), names, port)
                                for line in path.read_text().splitlines()),
                               key=lambda record: str(record["downstream_remote"]))
    served_record = records["envoy"][1]
    assert served_record["upstream_host"] == f"127.0.0.1:{backends[0].port}"
    assert records["envoy"][0]["flags"] == "UO"
    assert records["pointsman"] == records["envoy"]


def _normalized(record: dict[str, Any], names: dict[Any, str], port: int) -> dict[str, Any]:
    """Addresses and times that differ between the two runs, as what they stand for."""
    host, _, client_port = record["downstream_remote"].rpartition(":")
    record["downstream_remote"] = names[(host, int(client_port))]
    assert record.pop("downstream_local") == f"127.0.0.1:{port}"
    local = record.pop("upstream_local")
    record["upstream_local"] = bool(local and local.startswith("127.0.0.1:"))
    duration = record.pop("duration")
    record["long"] = duration >= 400  # a session lasts about its idle timeout
    assert duration < 5000
    assert record.pop("start").endswith("Z")
    return record
