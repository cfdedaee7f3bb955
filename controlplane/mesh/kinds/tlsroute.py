"""`gateway.networking.k8s.io/v1 TLSRoute` (and v1alpha2): a TLS connection to a Gateway TLS
listener, chosen by its SNI among `hostnames`, goes to weighted backendRefs: untouched when the
listener's mode is Passthrough (core), decrypted by the Gateway when it is Terminate
(extended; the backends then get the plain bytes).

v1 (apis/v1/tlsroute_types.go) requires 1 to 1,024 hostnames and exactly one rule; v1alpha2
had hostnames optional (at most 16). Both take one rule here: a TLS connection carries nothing
to choose between rules with."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.mesh.fields import HOSTNAME, Fields
from controlplane.mesh.kinds.refs import ParentRef
from controlplane.mesh.kinds.routes import parse_hostnames, parse_parents, simple_rules
from controlplane.mesh.kinds.tcproute import StreamRule


@dataclass(frozen=True)
class TlsRouteSpec:
    parents: tuple[ParentRef, ...]
    hostnames: tuple[str, ...]
    rules: tuple[StreamRule, ...]


def parse_tlsroute_spec(fields: Fields) -> TlsRouteSpec:
    """v1alpha2."""
    return _spec(fields, parse_hostnames(fields))


def parse_tlsroute_v1_spec(fields: Fields) -> TlsRouteSpec:
    hostnames = fields.items(
        "hostnames", lambda item: item.text(pattern=HOSTNAME, min_len=1, max_len=253),
        required=True, min_items=1, max_items=1024)
    return _spec(fields, hostnames)


def _spec(fields: Fields, hostnames: tuple[str, ...]) -> TlsRouteSpec:
    parents = parse_parents(fields)
    rules = simple_rules(fields, StreamRule)
    fields.done(unsupported=("useDefaultGateways",))
    return TlsRouteSpec(parents, hostnames, rules)  # type: ignore[arg-type]
