"""The runtime's config application (no sockets): whole-update validation, last good config
kept on a NACK, RDS/EDS interest, config_dump with versions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_pb2

from protos.errors import ConfigError
from protos.loader import pack_any, parse_message
from protos.registry import CLUSTER, CLUSTER_LOAD_ASSIGNMENT, ROUTE_CONFIGURATION
from proxy.bootstrap import translate_bootstrap
from proxy.server import Server


def cluster(name: str, **extra: Any) -> Any:
    return pack_any(parse_message({"name": name, "type": "EDS", "connect_timeout": "1s",
                                   "eds_cluster_config": {"service_name": f"{name}-eds"},
                                   **extra}, cluster_pb2.Cluster))


def new_server() -> Server:
    return Server(translate_bootstrap(bootstrap_pb2.Bootstrap()))


def test_cds_update_is_all_or_nothing() -> None:
    server = new_server()
    server.apply(CLUSTER, "1", (cluster("a"), cluster("b")))
    assert server.cluster_manager.names() == ["a", "b"]
    assert list(server.wanted_names(CLUSTER_LOAD_ASSIGNMENT)) == ["a-eds", "b-eds"]
    with pytest.raises(ConfigError) as caught:
        server.apply(CLUSTER, "2", (cluster("c"), cluster("d", lb_policy="CLUSTER_PROVIDED")))
    assert caught.value.resource == "d"
    assert caught.value.source == "CDS"
    assert server.cluster_manager.names() == ["a", "b"]  # nothing of version 2 applied
    assert server.state.versions[CLUSTER] == "1"
    server.apply(CLUSTER, "3", (cluster("a"),))
    assert server.cluster_manager.names() == ["a"]


def test_duplicate_names_are_rejected() -> None:
    with pytest.raises(ConfigError, match="duplicate"):
        new_server().apply(CLUSTER, "1", (cluster("a"), cluster("a")))


def test_eds_is_merged_and_dumped_with_versions() -> None:
    server = new_server()
    server.apply(CLUSTER, "1", (cluster("a"),))
    assignment = pack_any(parse_message({"cluster_name": "a-eds", "endpoints": [
        {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
            "address": "10.0.0.1", "port_value": 80}}}}]}]}, endpoint_pb2.ClusterLoadAssignment))
    server.apply(CLUSTER_LOAD_ASSIGNMENT, "e7", (assignment,))
    runtime = server.cluster_manager.get("a")
    assert runtime is not None and [h.address for h in runtime.hosts] == ["10.0.0.1"]
    dump = server.config_dump()["configs"]
    endpoints = next(c for c in dump if c["@type"].endswith("EndpointsConfigDump"))
    assert endpoints["dynamic_endpoint_configs"][0]["version_info"] == "e7"
    clusters = next(c for c in dump if c["@type"].endswith("ClustersConfigDump"))
    assert clusters["version_info"] == "1"
    assert clusters["dynamic_active_clusters"][0]["name"] == "a"


def test_unknown_type_is_rejected() -> None:
    with pytest.raises(ConfigError, match="not supported"):
        new_server().apply("type.googleapis.com/envoy.service.runtime.v3.Runtime", "1", ())
    assert list(new_server().wanted_names(ROUTE_CONFIGURATION)) == []


def test_two_listeners_on_one_address_are_refused() -> None:
    from envoy.config.listener.v3 import listener_pb2

    from protos.registry import LISTENER
    from tests.unit.proxy.listener_helpers import chain, listener_dict

    def packed(name: str) -> Any:
        body = listener_dict(chain("backend"))
        body["name"] = name
        return pack_any(parse_message(body, listener_pb2.Listener))

    with pytest.raises(ConfigError) as caught:
        new_server().apply(LISTENER, "1", (packed("first"), packed("second")))
    assert caught.value.resource == "second"
    assert caught.value.field == "address"
    assert "duplicate address" in str(caught.value)


def test_endpoints_of_removed_clusters_are_forgotten() -> None:
    server = new_server()
    server.apply(CLUSTER, "1", (cluster("a"), cluster("b")))
    assignments = tuple(pack_any(parse_message({"cluster_name": f"{name}-eds"},
                                               endpoint_pb2.ClusterLoadAssignment))
                        for name in ("a", "b"))
    server.apply(CLUSTER_LOAD_ASSIGNMENT, "e1", assignments)
    server.apply(CLUSTER, "2", (cluster("a"),))
    assert sorted(server.state.resources[CLUSTER_LOAD_ASSIGNMENT]) == ["a-eds"]


def _routes(name: str, cluster_name: str, **extra: Any) -> Any:
    return pack_any(parse_message({"name": name, **extra, "virtual_hosts": [{
        "name": "vh", "domains": ["*"], "routes": [{"match": {"prefix": "/"},
                                                    "route": {"cluster": cluster_name}}]}]},
        route_pb2.RouteConfiguration))


def test_rds_validate_clusters_refuses_unknown_clusters_only_when_asked() -> None:
    # RouteConfiguration.validate_clusters defaults to false over RDS: unknown clusters load
    # (a 503/404 at request time); set to true, Envoy refuses the route table.
    server = new_server()
    server.apply(CLUSTER, "1", (cluster("known"),))
    server.apply(ROUTE_CONFIGURATION, "1", (_routes("r", "missing"),))
    with pytest.raises(ConfigError) as caught:
        server.apply(ROUTE_CONFIGURATION, "2",
                     (_routes("r", "missing", validate_clusters=True),))
    assert "unknown cluster 'missing'" in str(caught.value)
    assert server.state.versions[ROUTE_CONFIGURATION] == "1"
    server.apply(ROUTE_CONFIGURATION, "3", (_routes("r", "known", validate_clusters=True),))


TLS_SOCKET = {"name": "envoy.transport_sockets.tls", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
    "sni": "collector.example"}}


def _traced_listener(collector: str) -> Any:
    """An LDS listener whose HCM traces to the `collector` cluster (OTLP over gRPC)."""
    from envoy.config.listener.v3 import listener_pb2

    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network."
                    "http_connection_manager.v3.HttpConnectionManager",
           "stat_prefix": "in", "route_config": {"name": "r"},
           "http_filters": [{"name": "router", "typed_config": {
               "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
           "tracing": {"provider": {"name": "envoy.tracers.opentelemetry", "typed_config": {
               "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
               "grpc_service": {"envoy_grpc": {"cluster_name": collector}}}}}}
    return pack_any(parse_message({
        "name": "traced", "address": {"socket_address": {"address": "127.0.0.1",
                                                         "port_value": 1}},
        "filter_chains": [{"filters": [{"name": "hcm", "typed_config": hcm}]}]},
        listener_pb2.Listener))


def test_a_tls_collector_cluster_is_nacked_whichever_update_joins_the_two() -> None:
    """Our exporters speak plaintext: a collector cluster with a transport_socket is refused
    by the update that joins cluster and collector (CDS or LDS), not at the first export."""
    from protos.registry import LISTENER

    server = new_server()
    server.apply(LISTENER, "1", (_traced_listener("otel"),))
    with pytest.raises(ConfigError) as caught:
        server.apply(CLUSTER, "1", (cluster("otel", transport_socket=TLS_SOCKET),))
    assert (caught.value.source, caught.value.resource, caught.value.field) == \
        ("CDS", "otel", "transport_socket")
    assert "the tracer of listener 'traced'" in caught.value.message
    assert server.cluster_manager.names() == []
    server.apply(CLUSTER, "2", (cluster("otel"), cluster("tls", transport_socket=TLS_SOCKET)))
    with pytest.raises(ConfigError) as caught:
        server.apply(LISTENER, "2", (_traced_listener("tls"),))
    assert (caught.value.source, caught.value.resource) == ("LDS", "tls")
    assert server.state.versions[LISTENER] == "1"


PROXY_PROTOCOL_SOCKET = {
    "name": "envoy.transport_sockets.upstream_proxy_protocol", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.proxy_protocol.v3"
                 ".ProxyProtocolUpstreamTransport",
        "config": {"version": "V1"},
        "transport_socket": {"name": "envoy.transport_sockets.raw_buffer", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3"
                     ".RawBuffer"}}}}


def test_http_routes_to_an_upstream_proxy_protocol_cluster_are_nacked() -> None:
    """The HTTP pools do not send a PROXY header: RDS or CDS joining a route to such a
    cluster is refused (it used to fail every request with a 503)."""
    server = new_server()
    server.apply(CLUSTER, "1", (cluster("pp", transport_socket=PROXY_PROTOCOL_SOCKET),
                                cluster("plain")))
    routes = pack_any(parse_message({"name": "r", "virtual_hosts": [{
        "name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/a"}, "route": {"cluster": "plain"}},
            {"match": {"prefix": "/"}, "route": {"weighted_clusters": {"clusters": [
                {"name": "plain", "weight": 1}, {"name": "pp", "weight": 1}]}}}]}]},
        route_pb2.RouteConfiguration))
    with pytest.raises(ConfigError) as caught:
        server.apply(ROUTE_CONFIGURATION, "1", (routes,))
    assert (caught.value.source, caught.value.resource, caught.value.field) == \
        ("RDS", "pp", "transport_socket")
    assert "virtual_hosts[0].routes[1].route.weighted_clusters.clusters[1].name" \
        in caught.value.message
    server.apply(CLUSTER, "2", (cluster("pp"), cluster("plain")))
    server.apply(ROUTE_CONFIGURATION, "2", (routes,))
    with pytest.raises(ConfigError) as caught:
        server.apply(CLUSTER, "3", (cluster("pp", transport_socket=PROXY_PROTOCOL_SOCKET),
                                    cluster("plain")))
    assert (caught.value.source, caught.value.resource) == ("CDS", "pp")
    assert server.state.versions[CLUSTER] == "2"


async def test_warming_ends_on_the_update_that_completes_it_without_polling() -> None:
    """Envoy's init (intro/arch_overview/operations/init): an EDS cluster warms until its
    endpoints arrive. The waiter is woken by the update itself, not by a poll: two passes of
    the event loop after the assignment, it is done (a 20 ms poll would still be asleep)."""
    server = new_server()
    server.apply(CLUSTER, "1", (cluster("a"),))
    waiter = asyncio.ensure_future(server._until_warm())
    for _ in range(3):
        await asyncio.sleep(0)
    assert not waiter.done()  # cluster "a" has no endpoints yet
    server.apply(CLUSTER_LOAD_ASSIGNMENT, "1", (pack_any(parse_message(
        {"cluster_name": "a-eds"}, endpoint_pb2.ClusterLoadAssignment)),))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert waiter.done()
    await waiter
