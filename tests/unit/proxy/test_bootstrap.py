"""Bootstrap translation: what start-up accepts, and refusals that name the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from protos.errors import ConfigError
from proxy.bootstrap import load_bootstrap

TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"


def write(tmp_path: Path, body: dict[str, Any], suffix: str = ".json") -> Path:
    path = tmp_path / f"bootstrap{suffix}"
    path.write_text(json.dumps(body))
    return path


def static_cluster(name: str) -> dict[str, Any]:
    return {"name": name, "type": "STATIC", "load_assignment": {
        "cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
            "socket_address": {"address": "127.0.0.1", "port_value": 1}}}}]}]}}


ADS = {"ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                      "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]},
       "lds_config": {"ads": {}, "resource_api_version": "V3"},
       "cds_config": {"ads": {}, "resource_api_version": "V3"}}


def test_full_bootstrap(tmp_path: Path) -> None:
    bootstrap = load_bootstrap(write(tmp_path, {
        "node": {"id": "n1", "cluster": "c1", "locality": {"region": "r", "zone": "z"},
                 "metadata": {"team": "edge"}},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9901}}},
        "dynamic_resources": ADS,
        "static_resources": {
            "clusters": [static_cluster("xds")],
            "listeners": [{"name": "l", "address": {"socket_address": {
                "address": "0.0.0.0", "port_value": 8080}}, "filter_chains": [{"filters": [{
                    "name": "tcp", "typed_config": {"@type": TCP_PROXY, "stat_prefix": "s",
                                                    "cluster": "xds"}}]}]}],
        },
    }))
    assert bootstrap.node.id == "n1"
    assert bootstrap.node.locality == ("r", "z", "")
    assert bootstrap.node.metadata == {"team": "edge"}
    assert bootstrap.admin_address == ("127.0.0.1", 9901)
    assert bootstrap.ads is not None
    assert (bootstrap.ads.cluster_name, bootstrap.ads.lds, bootstrap.ads.cds) == ("xds", True,
                                                                                   True)
    assert [item.name for item in bootstrap.listeners] == ["l"]
    assert bootstrap.ads.target == "127.0.0.1:1"
    assert bootstrap.ads.initial_fetch_timeout == 15.0
    assert bootstrap.ads.node_on_every_request
    assert not bootstrap.ads.delta


@pytest.mark.parametrize(("api_type", "delta"), [("GRPC", False), ("DELTA_GRPC", True),
                                                 ("delta_grpc", True)])
def test_ads_api_type_grpc_or_delta(tmp_path: Path, api_type: str, delta: bool) -> None:
    bootstrap = load_bootstrap(write(tmp_path, {
        "dynamic_resources": {**ADS, "ads_config": {**ADS["ads_config"], "api_type": api_type}},
        "static_resources": {"clusters": [static_cluster("xds")]}}))
    assert bootstrap.ads is not None and bootstrap.ads.delta is delta


def test_every_ads_endpoint_is_a_target(tmp_path: Path) -> None:
    """Several control planes in the ADS cluster: the client tries each in turn."""
    cluster = static_cluster("xds")
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"].append(
        {"endpoint": {"address": {"socket_address": {"address": "::1", "port_value": 2}}}})
    bootstrap = load_bootstrap(write(tmp_path, {"dynamic_resources": ADS,
                                                "static_resources": {"clusters": [cluster]}}))
    assert bootstrap.ads is not None
    assert bootstrap.ads.targets == ("127.0.0.1:1", "[::1]:2")


def test_yaml_is_read(tmp_path: Path) -> None:
    path = tmp_path / "bootstrap.yaml"
    path.write_text("node: {id: yaml-node}\nstatic_resources: {clusters: []}\n")
    assert load_bootstrap(path).node.id == "yaml-node"


@pytest.mark.parametrize(("body", "field"), [
    ({"overload_manager": {}}, "overload_manager"),
    ({"dynamic_resources": {**ADS, "ads_config": {**ADS["ads_config"], "api_type": "REST"}},
      "static_resources": {"clusters": [static_cluster("xds")]}},
     "dynamic_resources.ads_config.api_type"),
    ({"dynamic_resources": ADS}, "dynamic_resources.ads_config.grpc_services[0].envoy_grpc."
                                 "cluster_name"),
    ({"dynamic_resources": {"lds_config": {"path_config_source": {"path": "/x"}}}},
     "dynamic_resources.lds_config.path_config_source"),
    ({"static_resources": {"clusters": [static_cluster("a"), static_cluster("a")]}},
     "static_resources.clusters[1].name"),
    ({"static_resources": {"clusters": [{"name": "e", "type": "EDS",
                                         "eds_cluster_config": {"eds_config": {"ads": {}}}}]}},
     "static_resources.clusters[0].type"),
    ({"static_resources": {"secrets": [{"name": "s"}]}},
     "static_resources.secrets[0].tls_certificate"),
    ({"static_resources": {"secrets": [{"name": "s", "generic_secret": {}}]}},
     "static_resources.secrets[0].generic_secret"),
])
def test_refusals_name_the_field(tmp_path: Path, body: dict[str, Any], field: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as caught:
        load_bootstrap(path)
    assert caught.value.field == field
    assert caught.value.source == str(path)


def test_static_listener_error_names_listener_and_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_bootstrap(write(tmp_path, {"static_resources": {"listeners": [{
            "name": "broken", "address": {"socket_address": {"address": "not-an-ip",
                                                             "port_value": 1}},
            "filter_chains": [{"filters": [{"name": "tcp", "typed_config": {
                "@type": TCP_PROXY, "stat_prefix": "s", "cluster": "c"}}]}]}]}}))
    assert caught.value.field == "static_resources.listeners[0].address.socket_address.address"
    assert caught.value.resource == "broken"


def _ads_with_retry(retry_policy: dict[str, Any]) -> dict[str, Any]:
    service = {"envoy_grpc": {"cluster_name": "xds", "retry_policy": retry_policy}}
    return {"dynamic_resources": {**ADS, "ads_config": {**ADS["ads_config"],
                                                        "grpc_services": [service]}},
            "static_resources": {"clusters": [static_cluster("xds")]}}


@pytest.mark.parametrize(("retry_policy", "expected"), [
    (None, (500, 30_000)),  # Envoy's xDS defaults
    ({"num_retries": 3}, (500, 30_000)),
    ({"retry_back_off": {"base_interval": "0.1s", "max_interval": "2s"}}, (100, 2000)),
    ({"retry_back_off": {"base_interval": "0.25s"}}, (250, 2500)),  # max: 10 x base
    ({"retry_back_off": {"base_interval": "1.0009s", "max_interval": "1.0009s"}}, (1000, 1000)),
])
def test_ads_retry_back_off_sets_the_reconnect_backoff(
        tmp_path: Path, retry_policy: dict[str, Any] | None, expected: tuple[int, int]) -> None:
    body = _ads_with_retry(retry_policy) if retry_policy is not None else {
        "dynamic_resources": ADS, "static_resources": {"clusters": [static_cluster("xds")]}}
    ads = load_bootstrap(write(tmp_path, body)).ads
    assert ads is not None
    assert (ads.backoff.base_ms, ads.backoff.max_ms) == expected


def test_ads_retry_policy_fields_envoy_does_not_use_are_named_in_the_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    load_bootstrap(write(tmp_path, _ads_with_retry({"num_retries": 3, "retry_on": "5xx"})))
    assert "retry_policy.num_retries, retry_on: not used for the ADS stream" in caplog.text


@pytest.mark.parametrize(("back_off", "field", "message"), [
    ({"base_interval": "2s", "max_interval": "1s"}, "max_interval",
     "max_interval must be greater than or equal to the base_interval"),
    ({"base_interval": "0.0005s"}, "base_interval", "must be at least 1ms"),
    ({"max_interval": "1s"}, "base_interval", "base_interval is required"),
])
def test_ads_retry_back_off_refused_as_envoy_refuses_it(
        tmp_path: Path, back_off: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_bootstrap(write(tmp_path, _ads_with_retry({"retry_back_off": back_off})))
    assert caught.value.field == ("dynamic_resources.ads_config.grpc_services[0].envoy_grpc."
                                  f"retry_policy.retry_back_off.{field}")


def test_static_listener_without_name_is_named_with_a_uuid(tmp_path: Path) -> None:
    """Envoy names an unnamed static listener with a random UUID (its stats use the
    address); a second unnamed listener gets another one."""
    import uuid

    def unnamed(port: int) -> dict[str, Any]:
        return {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{"name": "tcp", "typed_config": {
                    "@type": TCP_PROXY, "stat_prefix": "s", "cluster": "c"}}]}]}

    bootstrap = load_bootstrap(write(tmp_path, {"static_resources": {
        "clusters": [static_cluster("c")], "listeners": [unnamed(8080), unnamed(8081)]}}))
    names = [item.name for item in bootstrap.listeners]
    assert [str(uuid.UUID(name)) for name in names] == names and len(set(names)) == 2
    assert bootstrap.listeners[0].stats_name == "127.0.0.1_8080"
    assert not bootstrap.message.static_resources.listeners[0].name  # config_dump as given


def test_a_tls_collector_cluster_stops_start_up(tmp_path: Path) -> None:
    """A stats sink (or a static listener's tracer or OTLP access log) naming a static cluster
    with a transport_socket: our exporters speak plaintext, so start-up refuses it."""
    tls = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                 "UpstreamTlsContext"}}
    sink = {"name": "envoy.stat_sinks.open_telemetry", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.stat_sinks.open_telemetry.v3."
                 "SinkConfig", "grpc_service": {"envoy_grpc": {"cluster_name": "otel"}}}}
    with pytest.raises(ConfigError) as caught:
        load_bootstrap(write(tmp_path, {"stats_sinks": [sink], "static_resources": {
            "clusters": [static_cluster("otel") | {"transport_socket": tls}]}}))
    assert (caught.value.resource, caught.value.field) == ("otel", "transport_socket")
    assert "stats_sinks[0]" in caught.value.message
    assert load_bootstrap(write(tmp_path, {"stats_sinks": [sink], "static_resources": {
        "clusters": [static_cluster("otel")]}})).stats_sinks


PROXY_PROTOCOL = {"name": "envoy.transport_sockets.upstream_proxy_protocol", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.proxy_protocol.v3"
             ".ProxyProtocolUpstreamTransport", "config": {"version": "V2"},
    "transport_socket": {"name": "raw", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3"
                 ".RawBuffer"}}}}


def _http_listener(cluster: str) -> dict[str, Any]:
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}]
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network."
                    "http_connection_manager.v3.HttpConnectionManager",
           "stat_prefix": "web", "http_filters": [{"name": "router", "typed_config": {
               "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
           "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                                               "routes": routes}]}}
    return {"name": "web", "address": {"socket_address": {
        "address": "127.0.0.1", "port_value": 8080}},
        "filter_chains": [{"filters": [{"name": "hcm", "typed_config": hcm}]}]}


def test_http_route_to_an_upstream_proxy_protocol_cluster_stops_start_up(
        tmp_path: Path) -> None:
    """tcp_proxy sends the PROXY header, the HTTP pools do not: refused at start-up rather
    than failing each request; a PROXY protocol cluster no HTTP route uses is fine."""
    clusters = [static_cluster("pp") | {"transport_socket": PROXY_PROTOCOL}]
    with pytest.raises(ConfigError) as caught:
        load_bootstrap(write(tmp_path, {"static_resources": {
            "clusters": clusters, "listeners": [_http_listener("pp")]}}))
    assert (caught.value.resource, caught.value.field) == ("pp", "transport_socket")
    assert "the route_config of listener 'web'" in caught.value.message
    tcp = {"name": "l4", "address": {"socket_address": {"address": "127.0.0.1",
                                                          "port_value": 8081}},
           "filter_chains": [{"filters": [{"name": "tcp", "typed_config": {
               "@type": TCP_PROXY, "stat_prefix": "s", "cluster": "pp"}}]}]}
    assert load_bootstrap(write(tmp_path, {"static_resources": {
        "clusters": clusters, "listeners": [tcp]}})).listeners


def test_ads_cluster_with_upstream_proxy_protocol_is_refused(tmp_path: Path) -> None:
    """The gRPC ADS channel sends no PROXY header: refused by name, not ignored."""
    with pytest.raises(ConfigError) as caught:
        load_bootstrap(write(tmp_path, {"dynamic_resources": ADS, "static_resources": {
            "clusters": [static_cluster("xds") | {"transport_socket": PROXY_PROTOCOL}]}}))
    assert caught.value.field == \
        "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name"
    assert "PROXY protocol" in caught.value.message
