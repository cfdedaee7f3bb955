"""`v1 Service`: a name and ports. Its endpoints are, without a `selector`, the sidecars
registering as it (node cluster = the Service's name, namespace in the node metadata); with a
`selector`, the workloads of its namespace whose labels match it (`pointsman sidecar --workload
NAME --label k=v`), as Kubernetes picks pods (a workload may back several Services), at their
address and the port's targetPort, a number or the name of a port the workload declares
(`--port NAME=NUMBER`, a container port's name); and in both cases the EndpointSlices labelled
`kubernetes.io/service-name` with its name (controlplane.mesh.kinds.endpointslice).

appProtocol (KEP-3726) chooses what the mesh does with a port: `http` and `kubernetes.io/ws`
are HTTP/1.1, `kubernetes.io/h2c` and `grpc` HTTP/2 without TLS, `tcp` opaque TCP, `tls` and
`kubernetes.io/wss` TLS carried opaquely (routed by SNI at a Gateway). Any other value (say
`postgresql`) is carried as opaque TCP; `pointsman analyze` says so. Without appProtocol the
port's protocol follows the routes attached to it (HTTPRoute/GRPCRoute: HTTP, TCPRoute: TCP,
TLSRoute: TLS), else TCP.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from controlplane.mesh.fields import DNS_LABEL, Fields, Item

HTTP_PROTOCOLS = {"http": "http", "kubernetes.io/ws": "http", "kubernetes.io/h2c": "h2c",
                  "grpc": "grpc"}
# Kubernetes IANA_SVC_NAME (validation.IsValidPortName): at most 15 characters, lower-case
# letters, digits and inner hyphens, at least one letter, no "--".
PORT_NAME = re.compile(r"^(?=.*[a-z])(?!.*--)[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
OPAQUE_PROTOCOLS = {"tcp": "tcp", "tls": "tls", "kubernetes.io/wss": "tls"}


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    target_port: int  # 0 when the targetPort is a name (target_port_name)
    app_protocol: str | None
    index: int
    target_port_name: str = ""  # a named targetPort: the workload's port of that name

    def target_on(self, workload_ports: Mapping[str, int]) -> int | None:
        """The port a workload serves this Service port on; None when the targetPort is a
        name the workload does not declare (Kubernetes then leaves the pod out)."""
        if self.target_port_name:
            return workload_ports.get(self.target_port_name)
        return self.target_port

    @property
    def declared(self) -> str | None:
        """What appProtocol says: http, h2c, grpc, tcp or tls; None when unset; "opaque" for a
        value we do not know (carried as TCP)."""
        if self.app_protocol is None:
            return None
        found = HTTP_PROTOCOLS.get(self.app_protocol) or OPAQUE_PROTOCOLS.get(self.app_protocol)
        return found or "opaque"


@dataclass(frozen=True)
class ServiceSpec:
    ports: tuple[ServicePort, ...]
    cluster_ip: str | None = None  # an IP the mesh also answers to (a virtual host domain)
    # spec.selector: None when absent (membership by sidecar registration); label -> value
    selector: tuple[tuple[str, str], ...] | None = None

    def selects(self, labels: Mapping[str, str]) -> bool:
        """Whether a workload with `labels` backs this Service: every selector label has that
        value (Kubernetes: a Service's selector is equality-based); none without a selector."""
        if not self.selector:
            return False
        return all(labels.get(key) == value for key, value in self.selector)

    def port(self, number: int) -> ServicePort | None:
        return next((port for port in self.ports if port.port == number), None)

    def port_named(self, name: str) -> ServicePort | None:
        return next((port for port in self.ports if port.name == name), None)


def parse_service_spec(fields: Fields) -> ServiceSpec:
    kind = fields.text("type", default="ClusterIP")
    if kind != "ClusterIP":
        raise fields.error("type", f"type {kind!r} is not supported: mesh Services are "
                                   "ClusterIP (a Gateway is the way in from outside)")
    ports = fields.items("ports", _port, min_items=1)
    _check_unique_ports(fields, ports)
    cluster_ip = _cluster_ip(fields)
    fields.raw("clusterIPs")
    fields.raw("ipFamilies")
    fields.raw("ipFamilyPolicy")
    selector = _selector(fields)
    fields.text("sessionAffinity", enum=("None",))
    fields.text("internalTrafficPolicy", enum=("Cluster",))
    if fields.flag("publishNotReadyAddresses"):
        raise fields.error("publishNotReadyAddresses", "true is not supported")
    fields.done(unsupported=("externalName", "externalIPs", "loadBalancerIP",
                             "loadBalancerSourceRanges", "externalTrafficPolicy",
                             "healthCheckNodePort", "sessionAffinityConfig",
                             "allocateLoadBalancerNodePorts", "loadBalancerClass",
                             "trafficDistribution"))
    _check_named_targets(fields, ports, selector)
    return ServiceSpec(ports, cluster_ip, selector)


def _selector(fields: Fields) -> tuple[tuple[str, str], ...] | None:
    """An empty selector is no selector: the API server drops it (`selector,omitempty` in
    k8s.io/api core/v1 ServiceSpec), and the endpoints controllers skip a nil one."""
    if fields.raw("selector") is None:
        return None
    return tuple(sorted(fields.text_map("selector").items())) or None


def _check_named_targets(fields: Fields, ports: tuple[ServicePort, ...],
                         selector: tuple[tuple[str, str], ...] | None) -> None:
    """A named targetPort is looked up in the selected workloads' ports; a Service without a
    selector has none to look in."""
    if selector is not None:
        return
    for port in ports:
        if port.target_port_name:
            raise fields.context.error(
                (*fields.path, "ports", port.index, "targetPort"),
                "a named targetPort needs a selector (it names a port of the selected "
                "workloads): give a number")


def _cluster_ip(fields: Fields) -> str | None:
    value = fields.text("clusterIP")
    if value is None or value in ("", "None"):
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as error:
        raise fields.error("clusterIP", f"invalid IP address {value!r}") from error


def _port(item: Item) -> ServicePort:
    def parse(fields: Fields) -> ServicePort:
        port = fields.integer("port", required=True, minimum=1, maximum=65535)
        assert port is not None
        fields.text("protocol", default="TCP", enum=("TCP",))
        target = fields.raw("targetPort")
        if target is None:
            target = port
        target_name = ""
        if isinstance(target, str):
            target_name = fields.text("targetPort", max_len=15, pattern=PORT_NAME) or ""
            target_port = 0
        else:
            target_port = fields.integer("targetPort", minimum=1, maximum=65535) or port
        fields.raw("nodePort")  # allocated by a cluster for NodePort Services; unused here
        return ServicePort(
            name=fields.text("name", default="", max_len=63, pattern=DNS_LABEL) or "",
            port=port, target_port=target_port,
            app_protocol=fields.text("appProtocol", min_len=1, max_len=253),
            index=item.index, target_port_name=target_name)
    return item.obj(parse)


def _check_unique_ports(fields: Fields, ports: tuple[ServicePort, ...]) -> None:
    numbers: set[int] = set()
    names: set[str] = set()
    for port in ports:
        if port.port in numbers:
            raise fields.context.error((*fields.path, "ports", port.index, "port"),
                                       f"duplicate port {port.port}")
        if port.name in names:
            raise fields.context.error((*fields.path, "ports", port.index, "name"),
                                       f"duplicate port name {port.name!r}")
        numbers.add(port.port)
        names.add(port.name)
    if len(ports) > 1 and "" in names:
        index = next(port.index for port in ports if not port.name)
        raise fields.context.error((*fields.path, "ports", index, "name"),
                                   "is required when a Service has more than one port")
