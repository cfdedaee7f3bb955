"""A UDP listener from LDS, in the real sidecar process against a scripted ADS server: added,
updated in place, a bad version NACKed naming the field while the last good one serves, and
removed."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2

from protos.loader import parse_message
from protos.registry import CLUSTER, LISTENER
from tests.integration.proxy.fake_ads import FakeAds
from tests.integration.proxy.test_ads_controlplane import ads_bootstrap
from tests.support.bootstraps import static_cluster
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port
from tests.support.udp_servers import NamedUdpBackend, query, udp_client, udp_proxy_listener


@pytest.fixture
def backend() -> Iterator[NamedUdpBackend]:
    server = NamedUdpBackend("a")
    yield server
    server.stop()


def udp_listener(port: int, stat_prefix: str, **extra: Any) -> listener_pb2.Listener:
    return parse_message(udp_proxy_listener("dns", port, {"stat_prefix": stat_prefix,
                                                          "cluster": "backend"}, **extra),
                         listener_pb2.Listener)


def test_a_udp_listener_from_lds(backend: NamedUdpBackend) -> None:
    ads = FakeAds()
    port = free_port()
    client = udp_client()
    try:
        with Pointsman(ads_bootstrap(ads.port)) as proxy:
            ads.wait_request(CLUSTER)
            ads.wait_request(LISTENER)
            nonce = ads.push(CLUSTER, "c1", [parse_message(
                static_cluster("backend", [backend.port]), cluster_pb2.Cluster)])
            ads.wait_request(CLUSTER, nonce=nonce)
            nonce = ads.push(LISTENER, "l1", [udp_listener(port, "v1")])
            assert not ads.wait_request(LISTENER, nonce=nonce).HasField("error_detail")
            proxy.wait_ready()
            assert query(client, ("127.0.0.1", port), 1) == "a"
            assert proxy.stat("udp.v1.downstream_sess_total") == 1

            nonce = ads.push(LISTENER, "l2", [udp_listener(port, "v2")])
            assert ads.wait_request(LISTENER, nonce=nonce).version_info == "l2"
            assert query(client, ("127.0.0.1", port), 2) == "a"
            assert proxy.stat("udp.v2.downstream_sess_total") == 1
            assert proxy.stat("listener_manager.listener_modified") == 1

            bad = udp_listener(port, "v3", udp_listener_config={"quic_options": {}})
            nonce = ads.push(LISTENER, "l3", [bad])
            nack = ads.wait_request(LISTENER, nonce=nonce)
            assert nack.version_info == "l2"
            assert "udp_listener_config.quic_options" in nack.error_detail.message
            assert query(client, ("127.0.0.1", port), 3) == "a"  # l2 still serves
            assert proxy.stat("udp.v2.downstream_sess_rx_datagrams") == 2

            nonce = ads.push(LISTENER, "l4", [])
            ads.wait_request(LISTENER, nonce=nonce)
            proxy.wait_until(
                lambda: proxy.stat("listener_manager.listener_removed") == 1, 10, "removed")
            with pytest.raises((TimeoutError, ConnectionRefusedError, socket.timeout)):
                query(client, ("127.0.0.1", port), 4, timeout=1.0)
    finally:
        client.close()
        ads.stop()
