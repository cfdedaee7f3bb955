"""`pointsman proxy` with a UDP listener and udp_proxy, over loopback, against three
DNS-shaped backends that answer with their names (tests.support.udp_servers)."""

from __future__ import annotations

import json
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.bootstraps import static_cluster
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port
from tests.support.udp_servers import NamedUdpBackend, query, udp_client, udp_proxy_listener


@pytest.fixture
def backends() -> Iterator[list[NamedUdpBackend]]:
    servers = [NamedUdpBackend(name, health_port=True) for name in ("a", "b", "c")]
    yield servers
    for server in servers:
        server.stop()


def bootstrap(port: int, backends: list[NamedUdpBackend], config: dict[str, Any],
              **cluster: Any) -> dict[str, Any]:
    return {"node": {"id": "udp", "cluster": "udp"}, "static_resources": {
        "listeners": [udp_proxy_listener("dns", port, {"stat_prefix": "dns",
                                                       "cluster": "backends", **config},
                                         udp_listener_config={"downstream_socket_config": {
                                             "max_rx_datagram_size": 512}})],
        "clusters": [static_cluster("backends", [b.port for b in backends], **cluster)]}}


def test_round_robin_spreads_sessions_and_a_session_keeps_its_backend(
        backends: list[NamedUdpBackend]) -> None:
    port = free_port()
    with Pointsman(bootstrap(port, backends, {})) as proxy:
        proxy.wait_ready()
        chosen = []
        for _ in range(6):
            client = udp_client()
            try:
                answers = {query(client, ("127.0.0.1", port), ident) for ident in range(4)}
            finally:
                client.close()
            assert len(answers) == 1  # a session's datagrams all reach one backend
            chosen.append(answers.pop())
        assert Counter(chosen) == {"a": 2, "b": 2, "c": 2}
        assert proxy.stat("udp.dns.downstream_sess_total") == 6
        assert proxy.stat("udp.dns.downstream_sess_rx_datagrams") == 24
        assert proxy.stat("udp.dns.downstream_sess_tx_datagrams") == 24
        assert proxy.stat("cluster.backends.udp.sess_tx_datagrams") == 24
        assert proxy.stat("cluster.backends.udp.sess_rx_datagrams") == 24


def test_source_ip_hash_keeps_each_client_ip_on_one_backend(
        backends: list[NamedUdpBackend]) -> None:
    port = free_port()
    config = {"hash_policies": [{"source_ip": True}]}
    with Pointsman(bootstrap(port, backends, config, lb_policy="RING_HASH")) as proxy:
        proxy.wait_ready()
        by_ip: dict[str, set[str]] = {}
        for ip in [f"127.0.0.{last}" for last in range(2, 14)]:
            for attempt in range(3):  # a new source port (a new session) each time
                client = udp_client(ip)
                try:
                    by_ip.setdefault(ip, set()).add(
                        query(client, ("127.0.0.1", port), attempt))
                finally:
                    client.close()
        assert all(len(names) == 1 for names in by_ip.values()), by_ip
        assert len({next(iter(names)) for names in by_ip.values()}) > 1  # IPs are spread


def test_a_session_ends_after_idle_timeout(backends: list[NamedUdpBackend]) -> None:
    port = free_port()
    with Pointsman(bootstrap(port, backends, {"idle_timeout": "1s"})) as proxy:
        proxy.wait_ready()
        client = udp_client()
        try:
            first = query(client, ("127.0.0.1", port), 1)
            assert proxy.stat("udp.dns.downstream_sess_active") == 1
            proxy.wait_until(lambda: proxy.stat("udp.dns.idle_timeout") == 1, 10, "idle")
            assert proxy.stat("udp.dns.downstream_sess_active") == 0
            query(client, ("127.0.0.1", port), 2)  # same client: a new session
        finally:
            client.close()
        assert proxy.stat("udp.dns.downstream_sess_total") == 2
        backend = next(b for b in backends if b.name == first)
        assert backend.received >= 1


def test_an_unhealthy_backend_is_skipped(backends: list[NamedUdpBackend]) -> None:
    port = free_port()
    cluster = {
        # no_traffic_interval: a UDP session is not an upstream connection, so for Envoy (and
        # us) the cluster never "has traffic" and checks run at this interval.
        "health_checks": [{"timeout": "1s", "interval": "0.2s", "unhealthy_threshold": 1,
                           "healthy_threshold": 1, "no_traffic_interval": "0.2s",
                           "tcp_health_check": {}}],
        "load_assignment": {"cluster_name": "backends", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": b.port}},
                "health_check_config": {"port_value": b.health_port}}}
            for b in backends]}]}}
    with Pointsman(bootstrap(port, backends, {}, **cluster)) as proxy:
        proxy.wait_ready()
        clients = [udp_client() for _ in range(3)]
        try:
            on_b = next(client for index, client in enumerate(clients)
                        if query(client, ("127.0.0.1", port), index) == "b")
            _unhealthy_b_is_skipped(proxy, port, backends, on_b)
        finally:
            for client in clients:
                client.close()


def _unhealthy_b_is_skipped(proxy: Pointsman, port: int, backends: list[NamedUdpBackend],
                            on_b: socket.socket) -> None:
    backends[1].set_healthy(False)
    proxy.wait_until(lambda: proxy.stat("cluster.backends.membership_healthy") == 2, 15,
                     "b unhealthy")
    answers = []
    for ident in range(9):  # new sessions
        client = udp_client()
        try:
            answers.append(query(client, ("127.0.0.1", port), ident))
        finally:
            client.close()
    assert set(answers) == {"a", "c"}
    # The session on b moves to a healthy backend with its next datagram (Envoy doc:
    # udp_proxy, "Load balancing and unhealthy host handling").
    assert query(on_b, ("127.0.0.1", port), 99) in {"a", "c"}


def test_oversized_datagrams_are_dropped_and_counted_and_access_logged_sessions(
        backends: list[NamedUdpBackend], tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "udp.log"
    fields = {"up": "%UPSTREAM_HOST%", "down": "%DOWNSTREAM_REMOTE_ADDRESS%",
              "rx": "%BYTES_RECEIVED%", "tx": "%BYTES_SENT%",
              "local": "%DOWNSTREAM_LOCAL_ADDRESS%", "flags": "%RESPONSE_FLAGS%"}
    config = {"idle_timeout": "0.5s", "access_log": [{"name": "file", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
        "path": str(log_path), "log_format": {"json_format": fields}}}]}
    with Pointsman(bootstrap(port, backends, config)) as proxy:
        proxy.wait_ready()
        client = udp_client()
        try:
            client.sendto(b"\x00\x09" + b"x" * 600, ("127.0.0.1", port))  # over 512
            answer = query(client, ("127.0.0.1", port), 7)
            source = client.getsockname()
        finally:
            client.close()
        proxy.wait_until(
            lambda: proxy.stat(f"listener.127.0.0.1_{port}.udp.downstream_rx_datagram_dropped")
            == 1, 10, "dropped")
        proxy.wait_until(lambda: log_path.exists() and log_path.read_text().strip() != "",
                         10, "access log")
        assert proxy.stat("udp.dns.downstream_sess_rx_datagrams") == 1  # not the big one
    record = json.loads(log_path.read_text().splitlines()[0])
    backend = next(b for b in backends if b.name == answer)
    assert record == {"up": f"127.0.0.1:{backend.port}", "down": f"127.0.0.1:{source[1]}",
                      "rx": 13, "tx": 3, "local": f"127.0.0.1:{port}", "flags": "-"}


def test_workers_share_the_listener_and_a_client_stays_on_one(
        backends: list[NamedUdpBackend]) -> None:
    """--concurrency 2: both workers bind the port with SO_REUSEPORT; the kernel hashes the
    4-tuple, so each client's datagrams reach one worker and one session (12 clients, 12
    sessions, each answered by one backend every time)."""
    port = free_port()
    config = bootstrap(port, backends, {})
    with Pointsman(config, extra_args=("--concurrency", "2")) as proxy:
        proxy.wait_ready()
        clients = [udp_client() for _ in range(12)]
        try:
            rounds = [[query(client, ("127.0.0.1", port), ident) for client in clients]
                      for ident in range(3)]
        finally:
            for client in clients:
                client.close()
        assert rounds[0] == rounds[1] == rounds[2]
        proxy.wait_until(lambda: proxy.stat("udp.dns.downstream_sess_rx_datagrams") == 36, 10,
                         "merged stats")
        assert proxy.stat("udp.dns.downstream_sess_total") == 12


def test_a_flood_of_sources_is_bounded_by_max_connections(
        backends: list[NamedUdpBackend]) -> None:
    """Hostile input: 400 source ports, junk and empty datagrams. Sessions stop at the
    cluster's max_connections (the rest counted in upstream_cx_overflow), the clients that
    got a session keep being served, nothing is logged per datagram."""
    port = free_port()
    cluster = {"circuit_breakers": {"thresholds": [{"max_connections": 20}]}}
    with Pointsman(bootstrap(port, backends, {}, **cluster)) as proxy:
        proxy.wait_ready()
        first = udp_client()
        flood = [udp_client() for _ in range(400)]
        try:
            assert query(first, ("127.0.0.1", port), 1) in {"a", "b", "c"}
            for start in range(0, 400, 50):  # paced: the kernel's socket buffer is finite
                for index in range(start, start + 50):
                    flood[index].sendto(b"" if index % 2 else b"\xff" * 100,
                                        ("127.0.0.1", port))
                proxy.wait_until(lambda start=start: proxy.stat(
                    "udp.dns.downstream_sess_total") == start + 51, 15, "flood")
            assert proxy.stat("udp.dns.downstream_sess_active") == 20
            assert proxy.stat("cluster.backends.upstream_cx_overflow") == 381
            assert query(first, ("127.0.0.1", port), 2) in {"a", "b", "c"}  # still served
        finally:
            for sock in [first, *flood]:
                sock.close()
        assert "Traceback" not in proxy.output()
