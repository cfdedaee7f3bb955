"""`gateway.networking.k8s.io/v1alpha2 TLSRoute`: a TLS connection to a Gateway TLS listener
in Passthrough mode, chosen by its SNI among `hostnames`, goes to weighted backendRefs
without being decrypted."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.mesh.fields import Fields
from controlplane.mesh.kinds.refs import ParentRef
from controlplane.mesh.kinds.routes import parse_hostnames, parse_parents, simple_rules
from controlplane.mesh.kinds.tcproute import StreamRule


@dataclass(frozen=True)
class TlsRouteSpec:
    parents: tuple[ParentRef, ...]
    hostnames: tuple[str, ...]
    rules: tuple[StreamRule, ...]


def parse_tlsroute_spec(fields: Fields) -> TlsRouteSpec:
    parents = parse_parents(fields)
    hostnames = parse_hostnames(fields)
    rules = simple_rules(fields, StreamRule)
    fields.done(unsupported=("useDefaultGateways",))
    return TlsRouteSpec(parents, hostnames, rules)  # type: ignore[arg-type]
