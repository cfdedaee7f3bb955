"""Delta xDS (`api_type: DELTA_GRPC`): the same scripted control plane
(tests/integration/proxy/fake_ads.py FakeDeltaAds) drives Envoy 1.40 and `pointsman proxy`,
and what each sends and serves is compared.

Script "wire" (an EDS cluster, its endpoints, a TCP listener): the first request of each type
(legacy wildcard for CDS/LDS, EDS by name, the node on every request), ACKs by nonce, an
unrequested resource dropped and ACKed, a cluster added then removed, a heartbeat, a NACK of a
bad cluster, a NACK of a malformed response (same text), endpoints kept after their removal,
and after a reconnect the subscriptions with the versions held (`initial_resource_versions`:
the removed endpoints and the refused cluster are not claimed).

Script "removals" (initial_fetch_timeout 0s everywhere, so nothing finishes warming by
timeout): an EDS cluster whose endpoints are removed before any arrived finishes warming with
no endpoints; removed route configurations and endpoints keep serving; a removed EDS cluster is
unsubscribed from.

Script "timeout": with initial_fetch_timeout 1s, endpoints that never come do not hold the
start-up; the listener serves (and closes connections: no endpoints); with
set_node_on_first_message_only the node is on the stream's first request only.

Script "restart" (against `pointsman controlplane`, which restarts with one endpoint moved):
both clients say what they hold, so only that ClusterLoadAssignment is sent again.

Differences, asserted as such: Envoy's NACK has code 13 (INTERNAL), ours 3
(INVALID_ARGUMENT), as in state of the world; the NACK texts of a refused cluster differ (each
names the bad field its own way).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2

from protos.loader import parse_message
from protos.registry import CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION
from tests.integration.proxy.fake_ads import FakeDeltaAds
from tests.integration.proxy.helpers import TaggedServer, endpoint, listener, read_line, tcp_proxy
from tests.integration.proxy.test_ads_controlplane import ads_bootstrap
from tests.integration.proxy.test_delta_ads import ControlPlane, write_resources
from tests.support.bootstraps import HCM_TYPE, ROUTER
from tests.support.envoy import Envoy
from tests.support.http_backends import EchoBackend
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port
from tests.support.processes import http_get
from tests.unit.controlplane.builders import cluster, endpoints, route
from tests.unit.controlplane.builders import listener as listener_resource

pytestmark = pytest.mark.conformance

PROXIES = {"envoy": Envoy, "pointsman": Pointsman}
NO_TIMEOUT = {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"}


def delta_bootstrap(xds_port: int, *, patient: bool = False) -> dict[str, Any]:
    bootstrap = ads_bootstrap(xds_port)
    dynamic = bootstrap["dynamic_resources"]
    dynamic["ads_config"]["api_type"] = "DELTA_GRPC"
    if patient:  # wait for the first responses forever
        dynamic["cds_config"] = dynamic["lds_config"] = NO_TIMEOUT
    return bootstrap


def eds_cluster(name: str, **extra: Any) -> cluster_pb2.Cluster:
    return parse_message({"name": name, "type": "EDS", "connect_timeout": "1s",
                          "eds_cluster_config": {"eds_config": NO_TIMEOUT}, **extra},
                         cluster_pb2.Cluster)


def assignment(name: str, port: int) -> endpoint_pb2.ClusterLoadAssignment:
    return parse_message({"cluster_name": name, "endpoints": [{"lb_endpoints": [endpoint(port)]}]},
                         endpoint_pb2.ClusterLoadAssignment)


def summary(request: discovery_pb2.DeltaDiscoveryRequest) -> dict[str, Any]:
    return {"subscribe": sorted(request.resource_names_subscribe),
            "unsubscribe": sorted(request.resource_names_unsubscribe),
            "initial": dict(request.initial_resource_versions),
            "nonce": request.response_nonce,
            "error": request.error_detail.message if request.HasField("error_detail") else None}


def acked(ads: FakeDeltaAds, type_url: str, nonce: str) -> dict[str, Any]:
    return summary(ads.wait_request(type_url, nonce=nonce))


def greeting(port: int) -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            return read_line(sock)
    except OSError:
        return "<refused>"


def wire_script(proxy_class: type[Envoy] | type[Pointsman]) -> dict[str, Any]:
    ads = FakeDeltaAds()
    backend = TaggedServer("a")
    listen = free_port()
    seen: dict[str, Any] = {}
    try:
        with proxy_class(delta_bootstrap(ads.port)) as proxy:
            seen["first cds"] = summary(ads.wait_request(CLUSTER))
            nonce = ads.push(CLUSTER, [(("backend", "c1"), eds_cluster("backend"))],
                             system_version="s1")
            seen["cds ack"] = acked(ads, CLUSTER, nonce)
            seen["first eds"] = summary(ads.wait_request(CLUSTER_LOAD_ASSIGNMENT))
            nonce = ads.push(CLUSTER_LOAD_ASSIGNMENT, [
                (("backend", "e1"), assignment("backend", backend.port)),
                (("unrequested", "e1"), assignment("unrequested", 1))])
            seen["eds ack"] = acked(ads, CLUSTER_LOAD_ASSIGNMENT, nonce)
            seen["first lds"] = summary(ads.wait_request(LISTENER, timeout=30))
            l4 = parse_message(listener("l4", listen, [{"filters": [tcp_proxy("backend")]}]),
                               listener_pb2.Listener)
            seen["lds ack"] = acked(ads, LISTENER, ads.push(LISTENER, [(("l4", "l1"), l4)]))
            proxy.wait_ready()
            seen["served"] = greeting(listen)

            static = parse_message({"name": "other", "type": "STATIC", "connect_timeout": "1s",
                                    "load_assignment": {"cluster_name": "other", "endpoints": [
                                        {"lb_endpoints": [endpoint(9)]}]}},
                                   cluster_pb2.Cluster)
            seen["add ack"] = acked(ads, CLUSTER, ads.push(CLUSTER, [(("other", "o1"), static)]))
            seen["other added"] = "other::" in proxy.admin("/clusters")[1]
            seen["remove ack"] = acked(ads, CLUSTER, ads.push(CLUSTER, removed=["other"]))
            seen["other removed"] = "other::" not in proxy.admin("/clusters")[1]
            heartbeat = discovery_pb2.Resource(name="backend", version="c1")
            seen["heartbeat ack"] = acked(ads, CLUSTER, ads.push(CLUSTER, raw=[heartbeat]))

            bad = eds_cluster("bad", connect_timeout="0s")
            nack = ads.wait_request(CLUSTER, nonce=ads.push(CLUSTER, [(("bad", "b1"), bad)]))
            seen["nack code"] = nack.error_detail.code
            seen["nack"] = summary(nack)
            seen["duplicate nack"] = acked(ads, CLUSTER, ads.push(CLUSTER, [(("x", "1"), static)],
                                                                   ["x"]))
            seen["endpoints removed ack"] = acked(
                ads, CLUSTER_LOAD_ASSIGNMENT, ads.push(CLUSTER_LOAD_ASSIGNMENT,
                                                       removed=["backend"]))
            seen["served after removal"] = greeting(listen)
            seen["node on every request"] = all(r.HasField("node") for r in ads.requests)

            ads.stop()
            ads = FakeDeltaAds(ads.port)
            seen["resumed"] = {kind: summary(ads.wait_request(kind, timeout=60)) for kind in
                               (CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER)}
            seen["served after reconnect"] = greeting(listen)
    finally:
        ads.stop()
        backend.stop()
    return seen


@pytest.fixture(scope="module")
def wire() -> dict[str, dict[str, Any]]:
    return {name: wire_script(proxy_class) for name, proxy_class in PROXIES.items()}


def ack(nonce: str) -> dict[str, Any]:
    return {"subscribe": [], "unsubscribe": [], "initial": {}, "nonce": nonce, "error": None}


WIRE_EXPECTED = {
    "first cds": ack(""),  # legacy wildcard: names nothing
    "cds ack": ack("nonce-1"),
    "first eds": {**ack(""), "subscribe": ["backend"]},
    "eds ack": ack("nonce-2"),  # the unrequested resource is dropped, the response ACKed
    "first lds": ack(""),
    "lds ack": ack("nonce-3"),
    "served": "a",
    "add ack": ack("nonce-4"),
    "other added": True,
    "remove ack": ack("nonce-5"),
    "other removed": True,
    "heartbeat ack": ack("nonce-6"),
    "duplicate nack": {**ack("nonce-8"),
                       "error": "duplicate name x found in the union of added+removed "
                                "resources"},
    "endpoints removed ack": ack("nonce-9"),
    "served after removal": "a",  # the endpoints stay
    "node on every request": True,
    # Held versions: not the refused cluster, not the removed endpoints (still subscribed).
    "resumed": {CLUSTER: {**ack(""), "initial": {"backend": "c1"}},
                CLUSTER_LOAD_ASSIGNMENT: {**ack(""), "subscribe": ["backend"]},
                LISTENER: {**ack(""), "initial": {"l4": "l1"}}},
    "served after reconnect": "a",
}


@pytest.mark.parametrize("proxy", PROXIES)
def test_delta_wire_as_envoy(wire: dict[str, dict[str, Any]], proxy: str) -> None:
    seen = wire[proxy]
    assert {key: seen[key] for key in WIRE_EXPECTED} == WIRE_EXPECTED
    nack = seen["nack"]
    assert nack["nonce"] == "nonce-7" and nack["subscribe"] == nack["unsubscribe"] == []
    assert "bad" in nack["error"]


def test_delta_nack_differences(wire: dict[str, dict[str, Any]]) -> None:
    assert (wire["envoy"]["nack code"], wire["pointsman"]["nack code"]) == (13, 3)
    assert "connect_timeout" in wire["pointsman"]["nack"]["error"]
    assert "Proto constraint validation failed" in wire["envoy"]["nack"]["error"]


def http_listener(port: int) -> listener_pb2.Listener:
    hcm = {"@type": HCM_TYPE, "stat_prefix": "ingress", "http_filters": [ROUTER],
           "rds": {"route_config_name": "routes", "config_source": NO_TIMEOUT}}
    return parse_message(listener("http", port, [{"filters": [
        {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]),
        listener_pb2.Listener)


def routes() -> route_pb2.RouteConfiguration:
    return parse_message({"name": "routes", "virtual_hosts": [{
        "name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/spare"}, "route": {"cluster": "spare"}},
            {"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]},
        route_pb2.RouteConfiguration)


def answer(port: int, path: str = "/") -> str:
    status, body = http_get(f"http://127.0.0.1:{port}{path}", timeout=5)
    return str(json.loads(body)["backend"]) if status == 200 else str(status)


def removals_script(proxy_class: type[Envoy] | type[Pointsman]) -> dict[str, Any]:
    ads = FakeDeltaAds()
    backend = EchoBackend("backend").start()
    listen = free_port()
    seen: dict[str, Any] = {}
    try:
        with proxy_class(delta_bootstrap(ads.port, patient=True)) as proxy:
            ads.wait_request(CLUSTER)
            ads.push(CLUSTER, [(("backend", "c1"), eds_cluster("backend")),
                               (("spare", "c1"), eds_cluster("spare"))])
            seen["first eds"] = summary(ads.wait_request(CLUSTER_LOAD_ASSIGNMENT))["subscribe"]
            ads.push(CLUSTER_LOAD_ASSIGNMENT, [(("backend", "e1"),
                                                assignment("backend", backend.port))])
            # No endpoints for spare will come: removing them ends its warming, empty.
            ads.push(CLUSTER_LOAD_ASSIGNMENT, removed=["spare"])
            ads.wait_request(LISTENER, timeout=30)
            ads.push(LISTENER, [(("http", "l1"), http_listener(listen))])
            seen["first rds"] = summary(ads.wait_request(ROUTE_CONFIGURATION))["subscribe"]
            ads.push(ROUTE_CONFIGURATION, [(("routes", "r1"), routes())])
            proxy.wait_ready(timeout=30)
            seen["served"] = answer(listen)
            seen["spare"] = answer(listen, "/spare")
            nonce = ads.push(ROUTE_CONFIGURATION, removed=["routes"])
            seen["routes removed ack"] = acked(ads, ROUTE_CONFIGURATION, nonce)["error"]
            nonce = ads.push(CLUSTER_LOAD_ASSIGNMENT, removed=["backend"])
            seen["endpoints removed ack"] = acked(ads, CLUSTER_LOAD_ASSIGNMENT, nonce)["error"]
            seen["served after removals"] = answer(listen)
            count = len(ads.requests)
            ads.push(CLUSTER, removed=["spare"])
            unsubscribe = ads.wait_request(CLUSTER_LOAD_ASSIGNMENT, after=count)
            seen["unsubscribe"] = summary(unsubscribe)
    finally:
        ads.stop()
        backend.stop()
    return seen


@pytest.fixture(scope="module")
def removals() -> dict[str, dict[str, Any]]:
    return {name: removals_script(proxy_class) for name, proxy_class in PROXIES.items()}


REMOVALS_EXPECTED = {
    "first eds": ["backend", "spare"],
    "first rds": ["routes"],
    "served": "backend",
    "spare": "503",  # warmed, with no endpoints
    "routes removed ack": None,
    "endpoints removed ack": None,
    "served after removals": "backend",  # Envoy ignores EDS and RDS removals
    "unsubscribe": {**ack(""), "unsubscribe": ["spare"]},
}


@pytest.mark.parametrize("proxy", PROXIES)
def test_delta_removals_as_envoy(removals: dict[str, dict[str, Any]], proxy: str) -> None:
    assert removals[proxy] == REMOVALS_EXPECTED


def timeout_script(proxy_class: type[Envoy] | type[Pointsman]) -> dict[str, Any]:
    """initial_fetch_timeout 1s (ours: the bootstrap's cds_config/lds_config; Envoy's EDS
    cluster: its eds_config): endpoints that never come do not hold the start-up."""
    ads = FakeDeltaAds()
    listen = free_port()
    quick = {**NO_TIMEOUT, "initial_fetch_timeout": "1s"}
    bootstrap = delta_bootstrap(ads.port)
    bootstrap["dynamic_resources"]["cds_config"] = bootstrap["dynamic_resources"][
        "lds_config"] = quick
    bootstrap["dynamic_resources"]["ads_config"]["set_node_on_first_message_only"] = True
    seen: dict[str, Any] = {}
    try:
        with proxy_class(bootstrap) as proxy:
            ads.wait_request(CLUSTER)
            ads.push(CLUSTER, [(("backend", "c1"), eds_cluster(
                "backend", eds_cluster_config={"eds_config": quick}))])
            ads.wait_request(CLUSTER_LOAD_ASSIGNMENT)  # never answered
            ads.wait_request(LISTENER, timeout=30)
            l4 = parse_message(listener("l4", listen, [{"filters": [tcp_proxy("backend")]}]),
                               listener_pb2.Listener)
            ads.push(LISTENER, [(("l4", "l1"), l4)])
            proxy.wait_ready(timeout=30)
            seen["ready"] = True
            seen["served"] = greeting(listen)  # no endpoints: the connection is closed
            nodes = [request.HasField("node") for request in ads.requests]
            seen["node on the first request only"] = nodes[0] and not any(nodes[1:])
    finally:
        ads.stop()
    return seen


@pytest.mark.parametrize("proxy", PROXIES)
def test_initial_fetch_timeout_as_envoy(proxy: str) -> None:
    assert timeout_script(PROXIES[proxy]) == {"ready": True, "served": "",
                                              "node on the first request only": True}


def restart_script(proxy_class: type[Envoy] | type[Pointsman], tmp_path: Path
                   ) -> dict[str, Any]:
    """Against `pointsman controlplane`: it restarts with one endpoint moved meanwhile; what
    does it send the reconnecting client (which says what it holds)?"""
    xds, listen = free_port(), free_port()
    config = tmp_path / f"{proxy_class.__name__}.yaml"
    with EchoBackend("web-1") as one, EchoBackend("web-2") as two:
        base = [cluster("web"), listener_resource("http", "main", listen), route("main", "web")]
        write_resources(config, [*base, endpoints("web", one.port)])
        control = ControlPlane(config, xds)
        try:
            with proxy_class(delta_bootstrap(xds)) as proxy:
                proxy.wait_ready()
                before = answer(listen, "/web")
                control.stop()
                write_resources(config, [*base, endpoints("web", two.port)])
                control = ControlPlane(config, xds)
                proxy.wait_until(lambda: answer(listen, "/web") == "web-2", 60, "reconnected")
                sent = {push["type"]: push["resources"] for push in control.pushes()}
        finally:
            control.stop()
    return {"before": before, "sent on reconnect": sent}


@pytest.mark.parametrize("proxy", PROXIES)
def test_a_restarted_control_plane_sends_only_what_changed(tmp_path: Path, proxy: str) -> None:
    assert restart_script(PROXIES[proxy], tmp_path) == {
        "before": "web-1",
        "sent on reconnect": {"cluster": 0, "endpoint": 1, "listener": 0, "route": 0}}
