"""Envoy v3 bootstrap pieces the differential tests share: one listener whose HTTP connection
manager ends in the router, and STATIC clusters on loopback ports."""

from __future__ import annotations

from typing import Any

HCM_TYPE = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
            ".HttpConnectionManager")
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
H2_OPTIONS = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "explicit_http_config": {"http2_protocol_options": {}}}}


def static_cluster(name: str, ports: list[int], **extra: Any) -> dict[str, Any]:
    """A STATIC cluster of 127.0.0.1 endpoints; `extra` adds or overrides Cluster fields."""
    return {
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                         "port_value": port}}}}
            for port in ports]}]},
        **extra,
    }


def http_bootstrap(port: int, routes: list[dict[str, Any]], clusters: list[dict[str, Any]],
                   *, stat_prefix: str = "ingress", **hcm: Any) -> dict[str, Any]:
    """static_resources with one listener on 127.0.0.1:`port`: an HTTP connection manager
    (router last, `hcm` for more of its fields) over one virtual host `*` with `routes`."""
    config = {"@type": HCM_TYPE, "stat_prefix": stat_prefix, "http_filters": [ROUTER],
              "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                                                  "routes": routes}]},
              **hcm}
    return {"static_resources": {
        "listeners": [{"name": stat_prefix, "address": {"socket_address": {
            "address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": config}]}]}],
        "clusters": clusters}}
