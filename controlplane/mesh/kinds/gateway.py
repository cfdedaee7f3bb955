"""`gateway.networking.k8s.io/v1 Gateway`: the edge. Listeners (apis/v1 gateway_types.go) with
a port, a protocol (HTTP, HTTPS, TLS, TCP), an optional hostname, TLS (mode Terminate with
certificateRefs to kubernetes.io/tls Secrets, or Passthrough) and allowedRoutes (namespaces
Same, All or None; kinds). `addresses` of type IPAddress are where the Gateway's proxy binds
its listeners (the node metadata `instance_ip` overrides them; default 0.0.0.0).

gatewayClassName is required as in the API; any class is served (the control plane is the
controller of every Gateway it is given). Listener conflicts (the spec's "distinct listeners"
rules) are reported by controlplane.mesh.resolve as Listener conditions.
"""

from __future__ import annotations

from dataclasses import dataclass

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

PROTOCOLS = ("HTTP", "HTTPS", "TLS", "TCP")
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

    @property
    def allowed_kinds(self) -> tuple[tuple[str, str], ...]:
        return self.kinds or tuple((GATEWAY_GROUP, kind) for kind in DEFAULT_KINDS[self.protocol])


@dataclass(frozen=True)
class GatewaySpec:
    class_name: str
    listeners: tuple[GatewayListener, ...]
    addresses: tuple[str, ...]

    def listener(self, name: str) -> GatewayListener | None:
        return next((item for item in self.listeners if item.name == name), None)


def parse_gateway_spec(fields: Fields) -> GatewaySpec:
    class_name = fields.req_str("gatewayClassName", min_len=1, max_len=253)
    listeners = fields.items("listeners", _listener, min_items=1, max_items=64)
    names = set()
    for listener in listeners:
        if listener.name in names:
            raise fields.context.error((*fields.path, "listeners", listener.index, "name"),
                                       f"listener name {listener.name!r} is not unique")
        names.add(listener.name)
    addresses = fields.items("addresses", _address, max_items=16)
    fields.done(unsupported=("infrastructure", "allowedListeners", "tls", "defaultScope",
                             "backendTLS"))
    return GatewaySpec(class_name, listeners, addresses)


def _address(item: Item) -> str:
    def parse(fields: Fields) -> str:
        fields.text("type", default="IPAddress", enum=("IPAddress",))
        value = fields.ip("value", required=True)
        assert value is not None
        return value
    return item.obj(parse)


def _listener(item: Item) -> GatewayListener:
    def parse(fields: Fields) -> GatewayListener:
        protocol = fields.req_str("protocol", enum=PROTOCOLS)
        hostname = fields.text("hostname", min_len=1, max_len=253, pattern=HOSTNAME)
        tls = fields.obj("tls", _tls)
        if protocol in ("HTTPS", "TLS") and tls is None:
            raise fields.error("tls", f"is required for protocol {protocol}")
        if protocol in ("HTTP", "TCP") and tls is not None:
            raise fields.error("tls", f"must not be set for protocol {protocol}")
        if protocol == "HTTPS" and tls is not None and tls.mode != "Terminate":
            raise fields.error("tls", "an HTTPS listener terminates TLS (mode Terminate); use "
                                      "protocol TLS for Passthrough")
        if protocol == "TCP" and hostname is not None:
            raise fields.error("hostname", "has no meaning for protocol TCP")
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
