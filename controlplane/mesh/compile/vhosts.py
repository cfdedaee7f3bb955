"""Virtual hosts and route tables: a Service's routes as its callers see them, and the
concatenation of many prebuilt virtual hosts into one RouteConfiguration.

A RouteConfiguration is a protobuf message whose `virtual_hosts` (field 2) is repeated: its
encoding is the concatenation of one length-delimited field per virtual host (protobuf
encoding guide, "Repeated fields"). Each virtual host is serialised once, in its own unit,
and a route table with a thousand of them is assembled by joining bytes, so a change to one
route re-serialises one virtual host.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf import any_pb2, json_format

from controlplane.cache import CachedResource
from controlplane.cache.resource import length_delimited
from controlplane.mesh.compile.envoy import seconds
from controlplane.mesh.compile.http_routes import (
    ClusterUse,
    Compiled,
    RuleContext,
    compile_rule,
    hash_policies,
    sorted_routes,
)
from controlplane.mesh.compile.memo import View
from controlplane.mesh.compile.policies import (
    ClusterSettings,
    cluster_settings,
    merge,
    service_policy,
)
from controlplane.mesh.objects import MeshObject
from controlplane.resources import ROUTE
from protos import registry

OWN = "(own)"  # callers in the Service's namespace
OTHERS = "(others)"  # callers elsewhere without consumer routes of their own


@dataclass(frozen=True)
class VirtualHostOut:
    name: str
    encoded: bytes  # a serialised VirtualHost
    clusters: frozenset[ClusterUse]
    features: frozenset[str]


def caller_view(caller_namespace: str, service: MeshObject, consumers: tuple[str, ...]
                ) -> str:
    """Which routes a caller in `caller_namespace` sees for `service`: OWN, OTHERS, or its
    namespace when it has consumer routes there (GAMMA: they replace the producer routes)."""
    if caller_namespace == service.namespace:
        return OWN
    if caller_namespace in consumers:
        return caller_namespace
    return OTHERS


def service_domains(service: MeshObject, own: bool) -> list[str]:
    name, namespace = service.name, service.namespace
    domains = [f"{name}.{namespace}.svc.cluster.local", f"{name}.{namespace}.svc",
               f"{name}.{namespace}"]
    if own:
        domains.insert(0, name)
    if service.spec.cluster_ip:
        domains.append(service.spec.cluster_ip)
    return domains


def service_vhost(view: View, namespace: str, name: str, port: int, seen_as: str
                  ) -> VirtualHostOut:
    """The virtual host of one Service port for the callers `seen_as` stands for."""
    service = view.service(namespace, name)
    assert service is not None
    attachments = view.routes_on_service_port(namespace, name, port)
    if seen_as == OWN or seen_as == OTHERS:
        chosen = [item for item in attachments if item.route.namespace == namespace]
    else:
        chosen = [item for item in attachments if item.route.namespace == seen_as]
    compiled: list[Compiled] = []
    for attachment in chosen:
        route = attachment.route
        for index in range(len(route.spec.rules)):
            compiled.append(compile_rule(view, RuleContext(route, index, service, port=port)))
    if compiled:
        routes = list(sorted_routes(compiled))
    else:  # no route attached: the Service itself (GAMMA: "as if the mesh were not present")
        default = default_route(view, service, port)
        compiled.append(default)
        routes = list(sorted_routes([default]))
    body = {"name": f"{name}.{namespace}:{port}",
            "domains": service_domains(service, own=seen_as == OWN), "routes": routes}
    message = vhost_message(body)
    return VirtualHostOut(str(body["name"]), message,
                          frozenset(use for item in compiled for use in item.clusters),
                          frozenset(feature for item in compiled for feature in item.features))


def default_route(view: View, service: MeshObject, port: int) -> Compiled:
    """Every request to a Service port without routes goes to its cluster, with the
    Service's own BackendTrafficPolicy (retry, request timeout, consistent hash)."""
    spec_port = service.spec.port(port)
    own = merge([service_policy(view, service, spec_port.name if spec_port else "")])
    settings: ClusterSettings = cluster_settings(own)
    use = ClusterUse(service.namespace, service.name, port, settings, True)
    action: dict[str, Any] = {"cluster": use.cluster_name,
                              "timeout": seconds(own.request_timeout or 0.0)}
    if own.retry is not None:
        retry: dict[str, Any] = {"retry_on": ",".join(own.retry.triggers),
                                 "num_retries": own.retry.num_retries}
        if own.retry.status_codes:
            retry["retriable_status_codes"] = list(own.retry.status_codes)
        if own.retry.per_try_timeout is not None:
            retry["per_try_timeout"] = seconds(own.retry.per_try_timeout)
        if own.retry.backoff_base is not None:
            retry["retry_back_off"] = {"base_interval": seconds(own.retry.backoff_base)}
        action["retry_policy"] = retry
    if own.load_balancer is not None and own.load_balancer.consistent_hash is not None:
        action["hash_policy"] = hash_policies(own.load_balancer.consistent_hash)
    out = Compiled()
    out.clusters.add(use)
    name = f"service/{service.namespace}/{service.name}/port/{port}"
    out.entries.append(((0,), {"name": name, "match": {"prefix": "/"}, "route": action}))
    return out


def vhost_message(body: dict[str, Any]) -> bytes:
    registry.load_all()
    message = route_components_pb2.VirtualHost()
    json_format.ParseDict(body, message)
    return message.SerializeToString(deterministic=True)


def route_table(name: str, vhosts: list[VirtualHostOut]) -> CachedResource:
    """A RouteConfiguration (ports ignored in Host matching, as Gateway API requires) from
    prebuilt virtual hosts, by concatenation."""
    head = route_pb2.RouteConfiguration(name=name, ignore_port_in_host_matching=True)
    parts = [head.SerializeToString(deterministic=True)]
    parts += [length_delimited(2, vhost.encoded) for vhost in vhosts]
    packed = any_pb2.Any(type_url=ROUTE.type_url, value=b"".join(parts))
    digest = hashlib.blake2b(packed.value, digest_size=8).hexdigest()
    return CachedResource(ROUTE.type_url, name, digest, packed)
