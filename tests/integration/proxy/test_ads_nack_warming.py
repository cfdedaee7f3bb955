"""Against a scripted ADS server: warming (/ready waits for EDS), NACK naming the field while
the last good config keeps serving, and resumption with held versions after a reconnect."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2

from protos.loader import parse_message
from protos.registry import CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER
from tests.integration.proxy.fake_ads import FakeAds
from tests.integration.proxy.helpers import TaggedServer, endpoint, listener, read_line, tcp_proxy
from tests.integration.proxy.test_ads_controlplane import ads_bootstrap
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port


def eds_cluster(connect_timeout: str = "1s") -> cluster_pb2.Cluster:
    return parse_message({"name": "backend", "type": "EDS", "connect_timeout": connect_timeout,
                          "eds_cluster_config": {"eds_config": {"ads": {}}}},
                         cluster_pb2.Cluster)


def assignment(port: int) -> endpoint_pb2.ClusterLoadAssignment:
    return parse_message({"cluster_name": "backend",
                          "endpoints": [{"lb_endpoints": [endpoint(port)]}]},
                         endpoint_pb2.ClusterLoadAssignment)


@pytest.fixture
def backend() -> Iterator[TaggedServer]:
    server = TaggedServer("a")
    yield server
    server.stop()


def test_warming_nack_and_resume(backend: TaggedServer) -> None:
    ads = FakeAds()
    listen_port = free_port()
    l4 = parse_message(listener("l4", listen_port, [{"filters": [tcp_proxy("backend")]}]),
                       listener_pb2.Listener)
    try:
        with Pointsman(ads_bootstrap(ads.port)) as proxy:
            first = ads.wait_request(CLUSTER)
            assert first.node.id == "sidecar-1" and list(first.resource_names) == []
            ads.wait_request(LISTENER)
            nonce = ads.push(CLUSTER, "c1", [eds_cluster()])
            eds = ads.wait_request(CLUSTER_LOAD_ASSIGNMENT)
            assert list(eds.resource_names) == ["backend"]
            ack = ads.wait_request(CLUSTER, nonce=nonce)
            assert ack.version_info == "c1" and not ack.HasField("error_detail")
            nonce = ads.push(LISTENER, "l1", [l4])
            ads.wait_request(LISTENER, nonce=nonce)
            # Warming: the EDS cluster has no endpoints yet, so not ready and not listening.
            assert proxy.admin("/ready")[0] == 503
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", listen_port), timeout=2).close()
            nonce = ads.push(CLUSTER_LOAD_ASSIGNMENT, "e1", [assignment(backend.port)])
            proxy.wait_ready()
            assert _greeting(listen_port) == "a"
            # A bad cluster: NACKed with the previous version, naming resource and field.
            nonce = ads.push(CLUSTER, "c2", [eds_cluster(connect_timeout="0s")])
            nack = ads.wait_request(CLUSTER, nonce=nonce)
            assert nack.version_info == "c1"
            assert nack.error_detail.code == 3
            assert "backend" in nack.error_detail.message
            assert "connect_timeout" in nack.error_detail.message
            assert _greeting(listen_port) == "a"  # the last good config still serves
            assert proxy.stat("cluster_manager.cds.update_rejected") == 1
            # Reconnect: the new stream resumes with the versions held (not the NACKed one).
            seen = len(ads.requests)
            ads.stop()
            ads = FakeAds(ads.port)
            resumed = {t: ads.wait_request(t, timeout=60)
                       for t in (CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER)}
            assert seen > 0
            assert resumed[CLUSTER].version_info == "c1"
            assert resumed[CLUSTER_LOAD_ASSIGNMENT].version_info == "e1"
            assert resumed[LISTENER].version_info == "l1"
            assert all(r.response_nonce == "" for r in resumed.values())
            assert _greeting(listen_port) == "a"
    finally:
        ads.stop()


def _greeting(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        return read_line(sock)


HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
       "HttpConnectionManager")
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def http_listener(port: int) -> listener_pb2.Listener:
    hcm = {"name": "hcm", "typed_config": {
        "@type": HCM, "stat_prefix": "ingress",
        "rds": {"route_config_name": "routes",
                "config_source": {"ads": {}, "resource_api_version": "V3"}},
        "http_filters": [{"name": "router", "typed_config": {"@type": ROUTER}}]}}
    return parse_message(listener("http", port, [{"filters": [hcm]}]), listener_pb2.Listener)


def test_new_listener_warms_until_its_routes_arrive(backend: TaggedServer) -> None:
    from envoy.config.route.v3 import route_pb2

    from protos.registry import ROUTE_CONFIGURATION

    ads = FakeAds()
    tcp_port, http_port = free_port(), free_port()
    l4 = parse_message(listener("l4", tcp_port, [{"filters": [tcp_proxy("backend")]}]),
                       listener_pb2.Listener)
    try:
        with Pointsman(ads_bootstrap(ads.port)) as proxy:
            ads.wait_request(LISTENER)
            ads.push(CLUSTER, "c1", [eds_cluster()])
            ads.wait_request(CLUSTER_LOAD_ASSIGNMENT)
            ads.push(CLUSTER_LOAD_ASSIGNMENT, "e1", [assignment(backend.port)])
            ads.push(LISTENER, "l1", [l4])
            proxy.wait_ready()
            nonce = ads.push(LISTENER, "l2", [l4, http_listener(http_port)])
            rds = ads.wait_request(ROUTE_CONFIGURATION)
            assert list(rds.resource_names) == ["routes"]
            ads.wait_request(LISTENER, nonce=nonce)
            with pytest.raises(ConnectionRefusedError):  # warming: not accepting yet
                socket.create_connection(("127.0.0.1", http_port), timeout=2).close()
            assert _greeting(tcp_port) == "a"  # the other listener is untouched
            assert proxy.stat("listener_manager.total_listeners_warming") == 1
            routes = parse_message({"name": "routes", "virtual_hosts": [{
                "name": "all", "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]},
                route_pb2.RouteConfiguration)
            ads.push(ROUTE_CONFIGURATION, "r1", [routes])
            proxy.wait_until(lambda: _accepts(http_port), 20, "warm")
            assert proxy.stat("listener_manager.total_listeners_warming") == 0
    finally:
        ads.stop()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
