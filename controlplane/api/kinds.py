"""Kind names as kubectl takes them: `svc`, `httproutes`, `HTTPRoute`,
`httproutes.gateway.networking.k8s.io` all name one kind. Kept apart from the mesh loader so
the command-line verbs start fast (tests check it lists the loader's kinds)."""

from __future__ import annotations

GATEWAY = "gateway.networking.k8s.io"
ENVOY_GATEWAY = "gateway.envoyproxy.io"
ISTIO_SECURITY = "security.istio.io"
GROUPS = {
    "Service": "", "Namespace": "", "Secret": "", "ConfigMap": "",
    "EndpointSlice": "discovery.k8s.io",
    "Gateway": GATEWAY, "GatewayClass": GATEWAY, "HTTPRoute": GATEWAY, "GRPCRoute": GATEWAY,
    "TCPRoute": GATEWAY, "TLSRoute": GATEWAY, "ReferenceGrant": GATEWAY,
    "BackendTLSPolicy": GATEWAY, "ListenerSet": GATEWAY,
    "BackendTrafficPolicy": ENVOY_GATEWAY, "SecurityPolicy": ENVOY_GATEWAY,
    "ClientTrafficPolicy": ENVOY_GATEWAY,
    "PeerAuthentication": ISTIO_SECURITY, "AuthorizationPolicy": ISTIO_SECURITY,
}
SHORT_NAMES = {
    "svc": "Service", "ns": "Namespace", "gtw": "Gateway", "gc": "GatewayClass",
    "refgrant": "ReferenceGrant", "cm": "ConfigMap", "btlspolicy": "BackendTLSPolicy",
    "lset": "ListenerSet",
    "btp": "BackendTrafficPolicy", "sp": "SecurityPolicy", "ctp": "ClientTrafficPolicy",
    "pa": "PeerAuthentication", "ap": "AuthorizationPolicy",
}


def _plural(kind: str) -> str:
    lower = kind.lower()
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    if lower.endswith("s"):
        return lower + "es"
    return lower + "s"


_NAMES = {**{name: name for name in GROUPS}, **{name.lower(): name for name in GROUPS},
          **{_plural(name): name for name in GROUPS}, **SHORT_NAMES}


def canonical_kind(name: str) -> str | None:
    """The kind `name` means, or None."""
    base = name.split(".", 1)[0]  # resource.group, as kubectl takes it
    return _NAMES.get(base) or _NAMES.get(base.lower())


def resource_name(kind: str) -> str:
    """`httproute.gateway.networking.k8s.io`: how kubectl names objects in its output."""
    group = GROUPS.get(kind, "")
    return f"{kind.lower()}.{group}" if group else kind.lower()
