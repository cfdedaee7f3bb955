"""The demo's topology as Envoy v3 resources and bootstraps (plain dicts, written as YAML).

    client -> sidecar-frontend :front_in -> frontend service
              frontend service -> sidecar-frontend :front_out -> sidecar-backend :back_in
              sidecar-backend -> backend-1 | backend-2 | backend-3 (round robin, EDS)

Both sidecars get everything over ADS from the control plane. Resources are scoped by node
cluster: `resources/frontend/` and `resources/backend/` (docs/controlplane.md, "Node scoping").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

T = "type.googleapis.com/"
HCM = T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = T + "envoy.extensions.filters.http.router.v3.Router"
OTEL = T + "envoy.config.trace.v3.OpenTelemetryConfig"
H2_OPTIONS = T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


@dataclass(frozen=True)
class Ports:
    xds: int
    xds_admin: int
    collector_grpc: int
    collector_http: int
    front_in: int
    front_out: int
    back_in: int
    front_admin: int
    back_admin: int
    frontend: int
    backends: tuple[int, int, int]


def address(port: int, host: str = "127.0.0.1") -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def endpoints(name: str, ports: list[int]) -> dict[str, Any]:
    return {
        "@type": T + "envoy.config.endpoint.v3.ClusterLoadAssignment",
        "cluster_name": name,
        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address(p)}} for p in ports]}],
    }


def eds_cluster(name: str) -> dict[str, Any]:
    return {
        "@type": T + "envoy.config.cluster.v3.Cluster",
        "name": name,
        "type": "EDS",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}},
    }


def static_cluster(name: str, port: int, *, http2: bool = False) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": address(port)}}]}]},
    }
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": H2_OPTIONS, "explicit_http_config": {"http2_protocol_options": {}}}}
    return cluster


def http_listener(name: str, port: int, service: str, *, route: str,
                  tracing: bool = True, direction: str = "INBOUND") -> dict[str, Any]:
    """`direction`: Listener.traffic_direction, as a mesh marks its sidecar listeners (Istio
    does): the tracer names an OUTBOUND listener's SERVER span `egress <host>`."""
    hcm: dict[str, Any] = {
        "@type": HCM,
        "stat_prefix": name,
        "rds": {"route_config_name": route,
                "config_source": {"ads": {}, "resource_api_version": "V3"}},
        "http_filters": [{"name": "envoy.filters.http.router",
                          "typed_config": {"@type": ROUTER}}],
    }
    if tracing:
        hcm["tracing"] = {
            "random_sampling": {"value": 100},
            "provider": {"name": "envoy.tracers.opentelemetry", "typed_config": {
                "@type": OTEL, "service_name": service,
                "grpc_service": {"envoy_grpc": {"cluster_name": "otel_collector"},
                                 "timeout": "1s"}}},
        }
    return {
        "@type": T + "envoy.config.listener.v3.Listener",
        "name": name,
        "address": address(port),
        "traffic_direction": direction,
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": hcm,
        }]}],
    }


def route(name: str, cluster: str | list[tuple[str, int]]) -> dict[str, Any]:
    action: dict[str, Any]
    if isinstance(cluster, str):
        action = {"cluster": cluster}
    else:
        action = {"weighted_clusters": {"clusters": [
            {"name": c, "weight": w} for c, w in cluster]}}
    return {
        "@type": T + "envoy.config.route.v3.RouteConfiguration",
        "name": name,
        "virtual_hosts": [{"name": name, "domains": ["*"],
                           "routes": [{"match": {"prefix": "/"}, "route": action}]}],
    }


def frontend_resources(p: Ports, tracing: bool = True) -> list[dict[str, Any]]:
    return [
        {"@type": T + "envoy.config.cluster.v3.Cluster", **static_cluster("frontend_local",
                                                                         p.frontend)},
        eds_cluster("backend"),
        endpoints("backend", [p.back_in]),
        http_listener("front_in", p.front_in, "sidecar-frontend", route="front_in",
                      tracing=tracing),
        http_listener("front_out", p.front_out, "sidecar-frontend", route="front_out",
                      tracing=tracing, direction="OUTBOUND"),
        route("front_in", "frontend_local"),
        route("front_out", "backend"),
    ]


def backend_resources(p: Ports, live_backends: list[int],
                      tracing: bool = True) -> list[dict[str, Any]]:
    return [
        eds_cluster("backend_local"),
        endpoints("backend_local", live_backends),
        http_listener("back_in", p.back_in, "sidecar-backend", route="back_in",
                      tracing=tracing),
        route("back_in", "backend_local"),
    ]


def sidecar_bootstrap(node: str, cluster: str, p: Ports, admin_port: int) -> dict[str, Any]:
    return {
        "node": {"id": node, "cluster": cluster},
        "admin": {"address": address(admin_port)},
        "dynamic_resources": {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds_cluster"}}]},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": [
            static_cluster("xds_cluster", p.xds, http2=True),
            static_cluster("otel_collector", p.collector_grpc, http2=True),
        ]},
    }
