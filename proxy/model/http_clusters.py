"""Clusters that HTTP routes send to must be ones the HTTP pools can speak to.

Envoy's upstream PROXY protocol transport socket (envoy.transport_sockets.upstream_proxy_protocol)
works under tcp_proxy here, but the HTTP pools do not send the header (Envoy would key its
pools by the downstream addresses it carries). A route naming such a cluster is refused when
the config joining the two is applied, as Envoy's unsupported features are refused by name:
at start-up (static listeners' inline routes and static clusters), or as a NACK of the LDS,
RDS or CDS update that brings the route or the cluster. A `cluster_header` route names its
cluster per request: that case still fails the attempt (503) in proxy.upstream.pools.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from protos.errors import ConfigError


def inline_route_configs(listeners: Iterable[Any]) -> list[tuple[Any, str]]:
    """(RouteConfig, where) of every HCM with an inline route_config on `listeners`."""
    found = []
    for listener in listeners:
        chains = [*listener.filter_chains,
                  *([listener.default_filter_chain] if listener.default_filter_chain else [])]
        for chain in chains:
            routes = getattr(chain.filter.config, "route_config", None)
            if routes is not None:
                found.append((routes, f"the route_config of listener {listener.name!r}"))
    return found


def refuse_proxy_protocol_routes(route_configs: Iterable[tuple[Any, str]],
                                 clusters: Mapping[str, Any], *, source: str = "") -> None:
    """ConfigError naming the first cluster with a PROXY protocol transport socket that a
    route of `route_configs` ((RouteConfig, where) pairs) sends HTTP to."""
    for routes, where in route_configs:
        for name, field in routes.referenced_clusters():
            cluster = clusters.get(name)
            tls = getattr(cluster, "upstream_tls", None)
            if tls is not None and tls.proxy_protocol_version is not None:
                raise ConfigError(
                    f"cluster {name!r} has an upstream PROXY protocol transport_socket and "
                    f"{where} routes HTTP to it ({field}): the HTTP pools do not implement it "
                    "(tcp_proxy does)", field="transport_socket", resource=name, source=source)
