"""Which mesh member an xDS client is, from its bootstrap's node.

A sidecar's `node.cluster` is its Service's name (or, for a workload, its workload's name);
`node.metadata` (a Struct) says:

- `namespace`: the Service's (or Gateway's, or workload's) namespace; default `default`;
- `kind`: `Service` (a sidecar registering as that Service), `Workload` (a sidecar whose
  labels decide which Services it backs: those whose `selector` they match, as Kubernetes
  pods) or `Gateway` (a Gateway's proxy); default: whichever of Service and Gateway exists
  with that name;
- `labels` (Workload): the workload's labels, a Struct of strings;
- `ports` (Workload): its named ports, name -> number (what a Service's named targetPort
  looks up, as a container port's name);
- `instance_ip`: the address a sidecar's inbound listeners bind and that it registers as its
  Service's endpoint (required for a Service with ports); a Gateway's proxy binds its
  listeners there (default: the Gateway's first IPAddress address, else 0.0.0.0);
- `app_ip`: where the application listens, on each port's targetPort; default 127.0.0.1;
- `outbound_ip`: where a sidecar's outbound listeners bind (one per port number of the
  Services it may call); default 127.0.0.1.

A node whose cluster names neither a Service nor a Gateway of its namespace is not a mesh
member (`node_identity` returns None); the control plane then serves it raw resources, if any.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format

from controlplane.mesh.objects import DEFAULT_NAMESPACE, ObjectKey
from controlplane.mesh.resolve import Mesh


class NodeError(ValueError):
    """The node says it is a mesh member but something in its metadata is wrong."""


@dataclass(frozen=True)
class MeshNode:
    id: str
    kind: str  # "Service" | "Gateway"
    name: str
    namespace: str
    instance_ip: str | None = None
    app_ip: str = "127.0.0.1"
    outbound_ip: str = "127.0.0.1"
    labels: tuple[tuple[str, str], ...] = ()  # a Workload's, sorted
    ports: tuple[tuple[str, int], ...] = ()  # a Workload's named ports, sorted

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(self.kind, self.namespace, self.name)

    def __str__(self) -> str:
        return f"node {self.id!r} ({self.kind} {self.namespace}/{self.name})"


def metadata_of(node: base_pb2.Node) -> dict[str, Any]:
    if not node.HasField("metadata"):
        return {}
    return dict(json_format.MessageToDict(node.metadata))


def node_identity(node: base_pb2.Node, mesh: Mesh) -> MeshNode | None:
    """The mesh member `node` is, None if it is none; NodeError if its metadata is wrong."""
    metadata = metadata_of(node)
    namespace = _text(metadata, "namespace") or DEFAULT_NAMESPACE
    name = node.cluster
    if not name:
        return None
    kind = _text(metadata, "kind")
    if kind == "Workload":
        return _workload(node, metadata, namespace)
    if kind is None:
        has_service = mesh.service(namespace, name) is not None
        has_gateway = mesh.get("Gateway", namespace, name) is not None
        if has_service and has_gateway:
            raise NodeError(f"both a Service and a Gateway are named {namespace}/{name}: say "
                            "which this node is with the node metadata 'kind'")
        if not (has_service or has_gateway):
            return None
        kind = "Gateway" if has_gateway else "Service"
    if kind not in ("Service", "Gateway"):
        raise NodeError(f"node metadata 'kind' must be Service, Workload or Gateway, not "
                        f"{kind!r}")
    return MeshNode(
        id=node.id, kind=kind, name=name, namespace=namespace,
        instance_ip=_ip(metadata, "instance_ip"),
        app_ip=_ip(metadata, "app_ip") or "127.0.0.1",
        outbound_ip=_ip(metadata, "outbound_ip") or "127.0.0.1")


def _workload(node: base_pb2.Node, metadata: dict[str, Any], namespace: str) -> MeshNode:
    """A workload is a mesh member whatever Services exist: they may select it later."""
    instance_ip = _ip(metadata, "instance_ip")
    if instance_ip is None:
        raise NodeError("a Workload needs the node metadata 'instance_ip' (the address its "
                        "inbound listeners bind and Services send to)")
    return MeshNode(
        id=node.id, kind="Workload", name=node.cluster, namespace=namespace,
        instance_ip=instance_ip, app_ip=_ip(metadata, "app_ip") or "127.0.0.1",
        outbound_ip=_ip(metadata, "outbound_ip") or "127.0.0.1",
        labels=tuple(sorted(_strings(metadata, "labels").items())),
        ports=tuple(sorted(_port_numbers(metadata).items())))


def _strings(metadata: dict[str, Any], key: str) -> dict[str, str]:
    value = metadata.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
        raise NodeError(f"node metadata {key!r} must map names to strings")
    return value


def _port_numbers(metadata: dict[str, Any]) -> dict[str, int]:
    value = metadata.get("ports") or {}
    if not isinstance(value, dict):
        raise NodeError("node metadata 'ports' must map port names to numbers")
    out = {}
    for name, number in value.items():
        if not isinstance(number, int | float) or number != int(number) \
                or not 0 < number < 65536:
            raise NodeError(f"node metadata 'ports': {name!r} must be a port number (1-65535)")
        out[name] = int(number)
    return out


def _text(metadata: dict[str, Any], key: str) -> str | None:
    value = metadata.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise NodeError(f"node metadata {key!r} must be a string")
    return value


def _ip(metadata: dict[str, Any], key: str) -> str | None:
    value = _text(metadata, key)
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as error:
        raise NodeError(f"node metadata {key!r}: {value!r} is not an IP address") from error
