"""`gateway.networking.k8s.io/v1alpha2 TCPRoute`: a connection to a Gateway TCP listener (or
to a Service port, GAMMA) goes to weighted backendRefs."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.mesh.fields import Fields
from controlplane.mesh.kinds.refs import BackendRef, ParentRef
from controlplane.mesh.kinds.routes import parse_parents, simple_rules


@dataclass(frozen=True)
class StreamRule:
    name: str | None
    backends: tuple[BackendRef, ...]
    index: int


@dataclass(frozen=True)
class TcpRouteSpec:
    parents: tuple[ParentRef, ...]
    rules: tuple[StreamRule, ...]
    hostnames: tuple[str, ...] = ()


def parse_tcproute_spec(fields: Fields) -> TcpRouteSpec:
    parents = parse_parents(fields)
    rules = simple_rules(fields, StreamRule)
    fields.done(unsupported=("useDefaultGateways",))
    return TcpRouteSpec(parents, rules)  # type: ignore[arg-type]
