"""`gateway.networking.k8s.io/v1 Gateway`: the edge. Listeners (apis/v1 gateway_types.go) with
a port, a protocol, an optional hostname, TLS (mode Terminate with certificateRefs to
kubernetes.io/tls Secrets, or Passthrough) and allowedRoutes (namespaces Same, All, Selector or
None; kinds). `addresses` of type IPAddress are where the Gateway's proxy binds its listeners
(the node metadata `instance_ip` overrides them; default 0.0.0.0).

What the API server refuses (the CRD's OpenAPI and CEL rules: kubebuilder markers of
gateway_types.go and shared_types.go) is refused here, by field path. What it stores but this
implementation cannot serve is stored, and reported in status by controlplane.mesh.resolve,
as the spec asks: a listener protocol other than HTTP, HTTPS, TLS and TCP (the listener
`Accepted=False/UnsupportedProtocol`), an address type other than IPAddress (the Gateway
`Accepted=False/UnsupportedAddress`), an `infrastructure.parametersRef` (Pointsman takes no
Gateway parameters: `Accepted=False/InvalidParameters`).

gatewayClassName is required as in the API; any class is served (the control plane is the
controller of every Gateway it is given). Listener conflicts (the spec's "distinct listeners"
rules) are reported by controlplane.mesh.resolve as Listener conditions.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from controlplane.mesh.fields import DNS_SUBDOMAIN, HOSTNAME, Fields, Item
from controlplane.mesh.kinds.labelselector import LabelSelector, parse_label_selector
from controlplane.mesh.kinds.refs import (
    GATEWAY_GROUP,
    GROUP,
    KIND,
    SecretRef,
    normal_group,
    parse_secret_ref,
)
from controlplane.mesh.objects import ObjectKey

PROTOCOLS = ("HTTP", "HTTPS", "TLS", "TCP")  # the ones served
# ProtocolType (gateway_types.go): core names, or a domain-prefixed implementation-specific one.
PROTOCOL = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$|"
                      r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9]+$")
# AddressType (shared_types.go).
ADDRESS_TYPE = re.compile(r"^Hostname|IPAddress|NamedAddress|[a-z0-9]([-a-z0-9]*[a-z0-9])?"
                          r"(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$")
# Label and annotation keys of spec.infrastructure (the CEL rules of GatewayInfrastructure).
META_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                      r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")  # LabelValue
# The route kinds each protocol takes when allowedRoutes.kinds is empty (gateway_types.go).
DEFAULT_KINDS = {"HTTP": ("HTTPRoute", "GRPCRoute"), "HTTPS": ("HTTPRoute", "GRPCRoute"),
                 "TLS": ("TLSRoute",), "TCP": ("TCPRoute",)}


@dataclass(frozen=True)
class ListenerTls:
    mode: str  # "Terminate" | "Passthrough"
    certificate_refs: tuple[SecretRef, ...] = ()


@dataclass(frozen=True)
class GatewayListener:
    name: str
    port: int
    protocol: str
    hostname: str | None
    tls: ListenerTls | None
    namespaces_from: str  # "Same" | "All" | "Selector" | "None"
    kinds: tuple[tuple[str, str], ...]  # allowed (group, kind)
    index: int
    # from: Selector: the route namespaces' labels it must match; None selects none
    namespace_selector: LabelSelector | None = None
    # a ListenerSet's listener merged into its Gateway: the ListenerSet's key and its own
    # name for the listener (controlplane.mesh.listenersets); None for the Gateway's own
    origin: ObjectKey | None = None
    entry: str = ""

    @property
    def supported_protocol(self) -> bool:
        return self.protocol in PROTOCOLS

    @property
    def allowed_kinds(self) -> tuple[tuple[str, str], ...]:
        return self.kinds or tuple((GATEWAY_GROUP, kind)
                                   for kind in DEFAULT_KINDS.get(self.protocol, ()))


@dataclass(frozen=True)
class GatewayAddress:
    """GatewaySpecAddress: `value` None asks the implementation to pick one."""

    type: str
    value: str | None
    index: int


@dataclass(frozen=True)
class ParametersRef:
    """LocalParametersReference: an object in the Gateway's namespace."""

    group: str
    kind: str
    name: str


@dataclass(frozen=True)
class Infrastructure:
    """GatewayInfrastructure: labels and annotations for what the Gateway runs as (here its
    proxy, which reports them), and controller-specific parameters."""

    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    parameters: ParametersRef | None = None


@dataclass(frozen=True)
class CaRef:
    """ObjectReference of FrontendTLSValidation.caCertificateRefs."""

    group: str
    kind: str
    name: str
    namespace: str | None = None


@dataclass(frozen=True)
class FrontendValidation:
    """FrontendTLSValidation: the CAs a client certificate must chain to, and the mode
    (AllowValidOnly: required and valid; AllowInsecureFallback: anything goes)."""

    ca_refs: tuple[CaRef, ...]
    mode: str


@dataclass(frozen=True)
class FrontendTls:
    """FrontendTLSConfig: `default` for HTTPS listeners, overridden per port."""

    default: FrontendValidation | None
    per_port: tuple[tuple[int, FrontendValidation | None], ...] = ()

    def for_port(self, port: int) -> FrontendValidation | None:
        for number, found in self.per_port:
            if number == port:
                return found
        return self.default


@dataclass(frozen=True)
class GatewaySpec:
    class_name: str
    listeners: tuple[GatewayListener, ...]
    addresses: tuple[str, ...]  # the IPAddress values, where the proxy may bind
    address_entries: tuple[GatewayAddress, ...] = ()
    infrastructure: Infrastructure = Infrastructure()
    # spec.tls.backend.clientCertificateRef: the certificate the Gateway presents to backends
    backend_client_certificate: SecretRef | None = None
    frontend: FrontendTls | None = None  # spec.tls.frontend: client certificate validation
    # spec.allowedListeners.namespaces: which ListenerSets may attach (from, selector)
    listener_sets_from: str = "None"
    listener_sets_selector: LabelSelector | None = None

    def listener(self, name: str) -> GatewayListener | None:
        return next((item for item in self.listeners if item.name == name), None)

    @property
    def unsupported_addresses(self) -> tuple[GatewayAddress, ...]:
        return tuple(item for item in self.address_entries if item.type != "IPAddress")


def parse_gateway_spec(fields: Fields) -> GatewaySpec:
    class_name = fields.req_str("gatewayClassName", min_len=1, max_len=253)
    listeners = parse_listeners(fields)
    entries = fields.items("addresses", _address, max_items=16)
    _check_unique_addresses(fields, entries)
    infrastructure = fields.obj("infrastructure", _infrastructure) or Infrastructure()
    client_certificate, frontend = fields.obj("tls", _gateway_tls) or (None, None)
    allowed = fields.obj("allowedListeners", _allowed_listeners) or ("None", None)
    fields.done(unsupported=("defaultScope", "backendTLS"))
    addresses = tuple(item.value for item in entries
                      if item.type == "IPAddress" and item.value is not None)
    return GatewaySpec(class_name, listeners, addresses, entries, infrastructure,
                       client_certificate, frontend, *allowed)


def parse_listeners(fields: Fields) -> tuple[GatewayListener, ...]:
    """`listeners` of a Gateway or a ListenerSet: 1..64, names unique."""
    listeners = fields.items("listeners", _listener, min_items=1, max_items=64)
    names = set()
    for listener in listeners:
        if listener.name in names:
            raise fields.context.error((*fields.path, "listeners", listener.index, "name"),
                                       f"listener name {listener.name!r} is not unique")
        names.add(listener.name)
    return listeners


def _allowed_listeners(fields: Fields) -> tuple[str, LabelSelector | None]:
    """AllowedListeners: which namespaces' ListenerSets may attach (default None)."""
    def namespaces(inner: Fields) -> tuple[str, LabelSelector | None]:
        value = inner.text("from", default="None", enum=("Same", "All", "Selector", "None"))
        selector = inner.obj("selector", parse_label_selector)
        return value or "None", selector if value == "Selector" else None
    return fields.obj("namespaces", namespaces) or ("None", None)


def _address(item: Item) -> GatewayAddress:
    def parse(fields: Fields) -> GatewayAddress:
        kind = fields.text("type", default="IPAddress", min_len=1, max_len=253,
                           pattern=ADDRESS_TYPE) or "IPAddress"
        value = fields.text("value", max_len=253) or None
        if value is not None and kind == "IPAddress":  # <gateway:validateIPAddress>
            try:
                value = str(ipaddress.ip_address(value))
            except ValueError as error:
                raise fields.error("value", f"invalid IP address {value!r}") from error
        if value is not None and kind == "Hostname" and not HOSTNAME.match(value):
            raise fields.error("value", f"invalid hostname {value!r}")
        return GatewayAddress(kind, value, item.index)
    return item.obj(parse)


def _check_unique_addresses(fields: Fields, entries: tuple[GatewayAddress, ...]) -> None:
    """"IPAddress values must be unique", "Hostname values must be unique" (CEL)."""
    seen: set[tuple[str, str]] = set()
    for entry in entries:
        if entry.value is None or entry.type not in ("IPAddress", "Hostname"):
            continue
        if (entry.type, entry.value) in seen:
            raise fields.context.error((*fields.path, "addresses", entry.index, "value"),
                                       f"{entry.type} values must be unique")
        seen.add((entry.type, entry.value))


def _infrastructure(fields: Fields) -> Infrastructure:
    labels = _meta_map(fields, "labels", 8)
    for name, value in labels.items():
        if len(value) > 63 or not LABEL_VALUE.match(value):
            raise fields.context.error((*fields.path, "labels", name),
                                       f"invalid label value {value!r}")
    annotations = _meta_map(fields, "annotations", 16)
    for name, value in annotations.items():
        if len(value) > 4096:  # AnnotationValue
            raise fields.context.error((*fields.path, "annotations", name),
                                       "must be at most 4096 characters")
    parameters = fields.obj("parametersRef", _parameters_ref)
    return Infrastructure(MappingProxyType(labels), MappingProxyType(annotations), parameters)


def _meta_map(fields: Fields, key: str, most: int) -> dict[str, str]:
    values = fields.text_map(key)
    if len(values) > most:
        raise fields.error(key, f"at most {most} entries (has {len(values)})")
    for name in values:
        if not META_KEY.match(name) or len(name.split("/")[0]) >= 253:
            raise fields.context.error((*fields.path, key, name),
                                       "keys are an optional DNS subdomain prefix and a name "
                                       "of up to 63 characters")
    return values


def _parameters_ref(fields: Fields) -> ParametersRef:
    return ParametersRef(
        group=fields.req_str("group", max_len=253, pattern=GROUP),
        kind=fields.req_str("kind", min_len=1, max_len=63, pattern=KIND),
        name=fields.req_str("name", min_len=1, max_len=253))


def _gateway_tls(fields: Fields) -> tuple[SecretRef | None, FrontendTls | None]:
    """GatewayTLSConfig: `backend.clientCertificateRef`, `frontend` client validation."""
    return fields.obj("backend", _backend_tls), fields.obj("frontend", _frontend)


def _frontend(fields: Fields) -> FrontendTls:
    default = fields.obj("default", _tls_config, required=True)
    per_port = fields.obj_list("perPort", _port_config, max_items=64)
    ports = [port for port, _ in per_port]
    for index, port in enumerate(ports):
        if port in ports[:index]:
            raise fields.context.error((*fields.path, "perPort", index, "port"),
                                       "Port for TLS configuration must be unique within the "
                                       "Gateway")
    return FrontendTls(default, per_port)


def _port_config(fields: Fields) -> tuple[int, FrontendValidation | None]:
    port = fields.integer("port", required=True, minimum=1, maximum=65535)
    assert port is not None
    return port, fields.obj("tls", _tls_config, required=True)


def _tls_config(fields: Fields) -> FrontendValidation | None:
    return fields.obj("validation", _validation)


def _validation(fields: Fields) -> FrontendValidation:
    refs = fields.obj_list("caCertificateRefs", _ca_ref, min_items=1, max_items=16)
    mode = fields.text("mode", default="AllowValidOnly",
                       enum=("AllowValidOnly", "AllowInsecureFallback")) or "AllowValidOnly"
    return FrontendValidation(refs, mode)


def _ca_ref(fields: Fields) -> CaRef:
    return CaRef(group=normal_group(fields.req_str("group", max_len=253, pattern=GROUP)),
                 kind=fields.req_str("kind", min_len=1, max_len=63, pattern=KIND),
                 name=fields.req_str("name", min_len=1, max_len=253),
                 namespace=fields.text("namespace", min_len=1, max_len=63))


def _backend_tls(fields: Fields) -> SecretRef | None:
    return fields.obj("clientCertificateRef", parse_secret_ref)


def _listener(item: Item) -> GatewayListener:
    def parse(fields: Fields) -> GatewayListener:
        protocol = fields.req_str("protocol", min_len=1, max_len=255, pattern=PROTOCOL)
        hostname = fields.text("hostname", min_len=1, max_len=253, pattern=HOSTNAME)
        tls = fields.obj("tls", _tls)
        if protocol in ("HTTPS", "TLS") and tls is None:
            raise fields.error("tls", f"is required for protocol {protocol}")
        if protocol in ("HTTP", "TCP", "UDP") and tls is not None:
            raise fields.error("tls", f"must not be set for protocol {protocol}")
        if protocol == "HTTPS" and tls is not None and tls.mode != "Terminate":
            raise fields.error("tls", "an HTTPS listener terminates TLS (mode Terminate); use "
                                      "protocol TLS for Passthrough")
        if protocol in ("TCP", "UDP") and hostname is not None:
            raise fields.error("hostname", f"has no meaning for protocol {protocol}")
        namespaces_from, selector, kinds = fields.obj("allowedRoutes", _allowed) or (
            "Same", None, ())
        port = fields.integer("port", required=True, minimum=1, maximum=65535)
        assert port is not None
        return GatewayListener(
            name=fields.req_str("name", min_len=1, max_len=253, pattern=DNS_SUBDOMAIN),
            port=port, protocol=protocol, hostname=hostname, tls=tls,
            namespaces_from=namespaces_from, kinds=kinds, index=item.index,
            namespace_selector=selector)
    return item.obj(parse)


def _tls(fields: Fields) -> ListenerTls:
    mode = fields.text("mode", default="Terminate", enum=("Terminate", "Passthrough"))
    assert mode is not None
    refs = fields.obj_list("certificateRefs", parse_secret_ref, max_items=64)
    if mode == "Terminate" and not refs:
        raise fields.error("certificateRefs", "needs at least one certificate when mode is "
                                              "Terminate")
    fields.done(unsupported=("options", "frontendValidation"))
    return ListenerTls(mode, refs)


def _allowed(fields: Fields) -> tuple[str, LabelSelector | None, tuple[tuple[str, str], ...]]:
    namespaces, selector = fields.obj("namespaces", _namespaces) or ("Same", None)
    kinds = fields.obj_list("kinds", _route_kind, max_items=8)
    return namespaces, selector, kinds


def _namespaces(fields: Fields) -> tuple[str, LabelSelector | None]:
    """RouteNamespaces: `selector` matters with from: Selector only ("ignored for other values
    of From", gateway_types.go), and is read (so checked) whatever `from` says."""
    value = fields.text("from", default="Same", enum=("Same", "All", "Selector", "None"))
    selector = fields.obj("selector", parse_label_selector)
    return value or "Same", selector if value == "Selector" else None


def _route_kind(fields: Fields) -> tuple[str, str]:
    group = normal_group(fields.text("group", default=GATEWAY_GROUP, max_len=253, pattern=GROUP)
                         or "")
    return group, fields.req_str("kind", min_len=1, max_len=63, pattern=KIND)
