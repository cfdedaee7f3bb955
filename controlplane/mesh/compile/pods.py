"""A workload reached by its own address, as a Kubernetes pod by its IP: on an HTTP outbound
port, a virtual host whose domain is the workload's instance_ip (any port: the route tables
ignore the port in Host matching) sends every request, untouched by any Service's routes, to
that workload's inbound listener on the same port (`pod|PORT|IP`, a STATIC cluster). The
workload must serve that port (a selecting Service's targetPort) over an HTTP-family protocol;
a port number no Service uses has no outbound listener to carry it (docs/mesh.md).

This is what the Gateway API mesh conformance test MeshFrontend expects: "Send to pod IP" is
answered by the pod, with no route of its Services applied (GEP-1426 routes attach to
Services, not to pods).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from envoy.config.route.v3 import route_components_pb2
from google.protobuf import json_format

from controlplane.cache import CachedResource
from controlplane.mesh.compile.envoy import pack
from controlplane.mesh.compile.memo import View
from controlplane.mesh.compile.sidecar import app_cluster
from controlplane.mesh.compile.vhosts import VirtualHostOut
from controlplane.mesh.compile.workload import served_ports
from controlplane.mesh.resolve import HTTP_FAMILY
from controlplane.resources import CLUSTER


def pod_name(port: int, ip: str) -> str:
    return f"pod|{port}|{ip}"


@dataclass(frozen=True)
class PodHosts:
    """One port's pod virtual hosts and their clusters; equal when their content is (so a
    rebuilt unit that found the same keeps its version, and the route tables using it stay)."""

    vhosts: tuple[VirtualHostOut, ...]
    clusters: tuple[CachedResource, ...] = field(compare=False)
    versions: tuple[str, ...]  # the clusters' content versions, for equality


def pod_hosts_unit(view: View, port: int) -> tuple[list[VirtualHostOut], list[CachedResource]]:
    """pod_hosts as a unit of its own: a workload registering rebuilds it, and the route
    tables only when what it found changed."""
    found: PodHosts = view.unit(("pod_hosts", port), lambda inner: pod_hosts(inner, port))
    return list(found.vhosts), list(found.clusters)


def pod_hosts(view: View, port: int) -> PodHosts:
    """The virtual hosts and clusters of the workloads serving HTTP on `port`."""
    vhosts, clusters = [], []
    for namespace, workload in view.all_workloads():
        served = served_ports(view, namespace, dict(workload.labels), dict(workload.ports))
        found = served.get(port)
        if found is None or found[2] not in HTTP_FAMILY:
            continue
        name = pod_name(port, workload.instance_ip)
        vhosts.append(_vhost(name, workload.instance_ip))
        clusters.append(pack(CLUSTER.type_url, name,
                             app_cluster(name, workload.instance_ip, port, found[2])))
    return PodHosts(tuple(vhosts), tuple(clusters), tuple(item.version for item in clusters))


def _vhost(cluster: str, ip: str) -> VirtualHostOut:
    domains = [ip, f"[{ip}]"] if ":" in ip else [ip]
    message = json_format.ParseDict({
        "name": cluster, "domains": domains,
        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "0s"}}]},
        route_components_pb2.VirtualHost())
    return VirtualHostOut(cluster, message.SerializeToString(deterministic=True), frozenset(),
                          frozenset())
