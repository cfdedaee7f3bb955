"""Server.apply_delta (no sockets): incremental updates per resource, with removals, checked
and applied like a state-of-the-world update (a rejected delta changes nothing), per-resource
versions in /config_dump, and Envoy's handling of removed EDS and RDS resources."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

from protos.errors import ConfigError
from protos.loader import pack_any, parse_message
from protos.registry import CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION
from proxy.bootstrap import translate_bootstrap
from proxy.server import Server
from proxy.xds.delta import DeltaResource
from tests.unit.proxy.listener_helpers import chain, listener_dict


def new_server() -> Server:
    # serve_traffic=False: listeners are built but bind no socket (as the workers' parent).
    return Server(translate_bootstrap(bootstrap_pb2.Bootstrap()), serve_traffic=False)


def cluster(name: str, **extra: Any) -> Any:
    return parse_message({"name": name, "type": "EDS", "connect_timeout": "1s",
                          "eds_cluster_config": {"service_name": f"{name}-eds"}, **extra},
                         cluster_pb2.Cluster)


def assignment(name: str, *addresses: str) -> Any:
    return parse_message({"cluster_name": name, "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": address, "port_value": 80}}}}
        for address in addresses]}]}, endpoint_pb2.ClusterLoadAssignment)


def listener(name: str, port: int, cluster_name: str = "a") -> Any:
    body = listener_dict(chain(cluster_name))
    body["name"] = name
    body["address"]["socket_address"]["port_value"] = port
    return parse_message(body, listener_pb2.Listener)


def routes(name: str, cluster_name: str) -> Any:
    return parse_message({"name": name, "virtual_hosts": [{
        "name": "vh", "domains": ["*"], "routes": [{"match": {"prefix": "/"},
                                                    "route": {"cluster": cluster_name}}]}]},
        route_pb2.RouteConfiguration)


def added(*items: tuple[str, str, Any]) -> tuple[DeltaResource, ...]:
    return tuple(DeltaResource(name, version, pack_any(message), index)
                 for index, (name, version, message) in enumerate(items))


def hosts(server: Server, name: str) -> list[str]:
    runtime = server.cluster_manager.get(name)
    assert runtime is not None
    return [host.address for host in runtime.hosts]


def dumped(server: Server, kind: str, key: str) -> dict[str, str]:
    config = next(c for c in server.config_dump()["configs"] if c["@type"].endswith(kind))
    return {item["name"]: item["version_info"] for item in config[key]}


def test_clusters_are_added_updated_and_removed_one_by_one() -> None:
    server = new_server()
    server.apply_delta(CLUSTER, "s1", added(("a", "1", cluster("a")), ("b", "1", cluster("b"))),
                       ())
    server.apply_delta(CLUSTER, "s2", added(("c", "1", cluster("c"))), ())
    assert server.cluster_manager.names() == ["a", "b", "c"]  # a and b stay
    server.apply_delta(CLUSTER, "s3", added(("a", "2", cluster("a", connect_timeout="2s"))),
                       ("b",))
    assert server.cluster_manager.names() == ["a", "c"]
    runtime = server.cluster_manager.get("a")
    assert runtime is not None and runtime.config.connect_timeout == 2.0
    assert dumped(server, "ClustersConfigDump", "dynamic_active_clusters") == {"a": "2",
                                                                               "c": "1"}
    assert server.state.versions[CLUSTER] == "s3"
    assert list(server.wanted_names(CLUSTER_LOAD_ASSIGNMENT)) == ["a-eds", "c-eds"]


def test_a_rejected_delta_changes_nothing() -> None:
    server = new_server()
    server.apply_delta(CLUSTER, "s1", added(("a", "1", cluster("a")), ("b", "1", cluster("b"))),
                       ())
    with pytest.raises(ConfigError) as caught:
        server.apply_delta(CLUSTER, "s2", added(
            ("c", "1", cluster("c")), ("d", "1", cluster("d", lb_policy="CLUSTER_PROVIDED"))),
            ("a",))
    assert (caught.value.source, caught.value.resource) == ("CDS", "d")
    assert caught.value.field == "lb_policy"
    assert server.cluster_manager.names() == ["a", "b"]  # neither added nor removed
    assert server.state.versions[CLUSTER] == "s1"
    with pytest.raises(ConfigError, match="duplicate resource 'x'"):
        # Two delta names, one cluster name: Envoy's CDS refuses the duplicate cluster.
        server.apply_delta(CLUSTER, "s3", added(("x", "1", cluster("x")),
                                                ("y", "1", cluster("x"))), ())


def test_listeners_are_added_and_removed_and_checked_as_a_whole() -> None:
    server = new_server()
    server.apply_delta(CLUSTER, "s1", added(("a", "1", cluster("a"))), ())
    server.apply_delta(LISTENER, "l1", added(("one", "1", listener("one", 10001))), ())
    server.apply_delta(LISTENER, "l2", added(("two", "1", listener("two", 10002))), ())
    assert sorted(server.listener_manager.staged) == ["one", "two"]
    # A new listener on an address another listener holds: refused, nothing changes.
    with pytest.raises(ConfigError, match="duplicate address") as caught:
        server.apply_delta(LISTENER, "l3", added(("three", "1", listener("three", 10001))),
                           ("two",))
    assert caught.value.resource == "three"
    assert sorted(server.listener_manager.staged) == ["one", "two"]
    server.apply_delta(LISTENER, "l4", (), ("one",))
    assert sorted(server.listener_manager.staged) == ["two"]
    assert dumped(server, "ListenersConfigDump", "dynamic_listeners") == {"two": "1"}


def test_endpoints_are_applied_per_resource_and_a_removal_keeps_them() -> None:
    server = new_server()
    server.apply_delta(CLUSTER, "s1", added(("a", "1", cluster("a")), ("b", "1", cluster("b"))),
                       ())
    server.apply_delta(CLUSTER_LOAD_ASSIGNMENT, "", added(
        ("a-eds", "e1", assignment("a-eds", "10.0.0.1"))), ())
    assert hosts(server, "a") == ["10.0.0.1"]
    assert not server.cluster_manager.all_initialized()  # b is warming
    # Envoy's EDS cluster ignores a removal: a keeps its endpoints...
    server.apply_delta(CLUSTER_LOAD_ASSIGNMENT, "", (), ("a-eds", "b-eds"))
    assert hosts(server, "a") == ["10.0.0.1"]
    # ... and a cluster still warming finishes warming, with no endpoints.
    assert hosts(server, "b") == []
    assert server.cluster_manager.all_initialized()
    server.apply_delta(CLUSTER_LOAD_ASSIGNMENT, "", added(
        ("b-eds", "e2", assignment("b-eds", "10.0.0.2"))), ())
    assert hosts(server, "b") == ["10.0.0.2"]
    assert dumped(server, "EndpointsConfigDump", "dynamic_endpoint_configs")["b-eds"] == "e2"


def test_a_named_resource_must_be_the_one_it_is_sent_as() -> None:
    server = new_server()
    server.apply_delta(CLUSTER, "s1", added(("a", "1", cluster("a"))), ())
    with pytest.raises(ConfigError) as caught:
        server.apply_delta(CLUSTER_LOAD_ASSIGNMENT, "", added(
            ("a-eds", "e1", assignment("other", "10.0.0.1"))), ())
    assert (caught.value.source, caught.value.resource, caught.value.field) == (
        "EDS", "a-eds", "resources[0].resource.cluster_name")
    with pytest.raises(ConfigError) as caught:
        server.apply_delta(ROUTE_CONFIGURATION, "", added(("r", "1", routes("q", "a"))), ())
    assert caught.value.field == "resources[0].resource.name"
    assert not server.state.resources[ROUTE_CONFIGURATION]


def test_a_removed_route_configuration_stays() -> None:
    server = new_server()
    server.apply_delta(CLUSTER, "s1", added(("a", "1", cluster("a"))), ())
    server.apply_delta(ROUTE_CONFIGURATION, "", added(("r", "1", routes("r", "a"))), ())
    server.apply_delta(ROUTE_CONFIGURATION, "", (), ("r",))  # Envoy: "Ignoring."
    assert server.routes.get("r") is not None
    assert dumped(server, "RoutesConfigDump", "dynamic_route_configs") == {"r": "1"}


def test_observers_get_the_equivalent_state_of_the_world_update() -> None:
    """proxy.workers fans updates out as SotW sets: a delta becomes the whole set for LDS/CDS
    and the changed resources for EDS/RDS (whose removals change nothing)."""
    server = new_server()
    seen: list[tuple[str, str, tuple[Any, ...]]] = []
    server.update_observers.append(lambda *update: seen.append(update))
    server.apply_delta(CLUSTER, "s1", added(("a", "1", cluster("a")), ("b", "1", cluster("b"))),
                       ())
    server.apply_delta(CLUSTER, "s2", added(("c", "1", cluster("c"))), ("b",))
    server.apply_delta(CLUSTER_LOAD_ASSIGNMENT, "", added(
        ("a-eds", "e1", assignment("a-eds", "10.0.0.1"))), ("c-eds",))
    assert [(t, v, len(r)) for t, v, r in seen] == [
        (CLUSTER, "s1", 2), (CLUSTER, "s2", 2), (CLUSTER_LOAD_ASSIGNMENT, "", 2)]
    worker = new_server()
    for update in seen:
        worker.apply(*update)
    assert worker.cluster_manager.names() == server.cluster_manager.names() == ["a", "c"]
    assert hosts(worker, "a") == ["10.0.0.1"] and hosts(worker, "c") == []
    assert worker.cluster_manager.all_initialized()
