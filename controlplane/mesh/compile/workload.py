"""A workload sidecar's inbound side: the Services whose `selector` its labels match decide
which of its ports are served, as in Kubernetes a pod backs every Service selecting it.

Per target port (a Service port's targetPort, a number or one of the workload's named ports),
one listener at `instance_ip:target` (the address and port Services send to, as a pod's
address and container port) sending to `inbound|target`, the application at
`app_ip:target`. When several selecting Service ports share a target port, the first by
namespace/name and port order whose protocol is HTTP-family (http, h2c, grpc) decides how it is
served (its policies apply), else the first: one port carries one protocol.
"""

from __future__ import annotations

from collections.abc import Mapping

from controlplane.mesh.compile.memo import View
from controlplane.mesh.compile.sidecar import (
    InboundPort,
    Part,
    authorizations,
    inbound_port,
    tls_hostnames,
)
from controlplane.mesh.kinds.service import ServicePort
from controlplane.mesh.objects import MeshObject
from controlplane.mesh.resolve import HTTP_FAMILY

Served = tuple[MeshObject, ServicePort, str]  # the Service, its port, the port's protocol


def selecting_services(view: View, namespace: str, labels: Mapping[str, str]
                       ) -> list[MeshObject]:
    return [service for service in view.services_in(namespace)
            if service.spec.selects(labels)]


def served_ports(view: View, namespace: str, labels: Mapping[str, str],
                 ports: Mapping[str, int]) -> dict[int, Served]:
    """Target port -> the Service port that decides how it is served."""
    chosen: dict[int, Served] = {}
    for service in selecting_services(view, namespace, labels):
        for port in service.spec.ports:
            target = port.target_on(ports)
            if target is None:
                continue
            protocol = view.protocol(namespace, service.name, port.port)
            current = chosen.get(target)
            if current is None or (current[2] not in HTTP_FAMILY and protocol in HTTP_FAMILY):
                chosen[target] = (service, port, protocol)
    return chosen


def workload_inbound(view: View, namespace: str, instance_ip: str, app_ip: str,
                     labels: tuple[tuple[str, str], ...],
                     ports: tuple[tuple[str, int], ...]) -> Part:
    """The workload's inbound ports, each served as the Service port that decides it says:
    its mTLS mode, its AuthorizationPolicies and its policies (compile/sidecar.py)."""
    listeners, clusters, notes = [], [], []
    for target, (service, port, protocol) in sorted(
            served_ports(view, namespace, dict(labels), dict(ports)).items()):
        sending = [(other, item.port) for other in selecting_services(view, namespace,
                                                                      dict(labels))
                   for item in other.spec.ports if item.target_on(dict(ports)) == target]
        listener, cluster, said = inbound_port(
            view, InboundPort(service, port.name, target, target, protocol,
                              tls_hostnames(view, sending)), instance_ip,
            app_ip, authorizations(view, service))
        listeners.append(listener)
        clusters.append(cluster)
        notes += said
    return Part(tuple(listeners), (), tuple(clusters), notes=tuple(notes))
