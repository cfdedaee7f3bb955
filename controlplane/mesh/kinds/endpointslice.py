"""`discovery.k8s.io/v1 EndpointSlice`: endpoints of a Service without a sidecar. The slice
names its Service with the label `kubernetes.io/service-name`; each of its ports (matched to
the Service port by name) is the port traffic goes to on every address (the target port: such
endpoints are reached directly, not through a sidecar). `conditions.ready: false` makes an
endpoint unhealthy, `terminating: true` draining (Envoy health_status)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from controlplane.mesh.fields import DNS_LABEL, Fields, Item

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class SlicePort:
    name: str
    port: int


@dataclass(frozen=True)
class SliceEndpoint:
    addresses: tuple[str, ...]
    ready: bool = True
    terminating: bool = False
    zone: str = ""


@dataclass(frozen=True)
class EndpointSliceSpec:
    """EndpointSlice keeps its fields at the top level; we gather them here."""

    address_type: str
    endpoints: tuple[SliceEndpoint, ...]
    ports: tuple[SlicePort, ...]


def parse_endpointslice(fields: Fields) -> EndpointSliceSpec:
    address_type = fields.req_str("addressType", enum=("IPv4", "IPv6"))
    endpoints = fields.items("endpoints", lambda item: _endpoint(item, address_type),
                            max_items=1000)
    ports = fields.items("ports", _port, max_items=100)
    return EndpointSliceSpec(address_type, endpoints, ports)


def _endpoint(item: Item, address_type: str) -> SliceEndpoint:
    def parse(fields: Fields) -> SliceEndpoint:
        addresses = fields.items("addresses", lambda a: _address(a, address_type),
                                min_items=1, max_items=100)
        conditions = fields.obj("conditions", _conditions) or (True, False)
        fields.raw("hostname")
        fields.raw("nodeName")
        fields.raw("targetRef")
        fields.raw("hints")
        zone = fields.text("zone", default="") or ""
        return SliceEndpoint(addresses, ready=conditions[0], terminating=conditions[1],
                             zone=zone)
    return item.obj(parse)


def _conditions(fields: Fields) -> tuple[bool, bool]:
    ready = fields.flag("ready", default=True)
    fields.flag("serving")  # serving but not ready only matters to terminating endpoints
    terminating = fields.flag("terminating", default=False)
    return bool(ready), bool(terminating)


def _address(item: Item, address_type: str) -> str:
    text = item.text(min_len=1)
    try:
        address = ipaddress.ip_address(text)
    except ValueError as error:
        raise item.error(f"invalid IP address {text!r}") from error
    if (address.version == 4) != (address_type == "IPv4"):
        raise item.error(f"{text} is not an {address_type} address")
    return str(address)


def _port(item: Item) -> SlicePort:
    def parse(fields: Fields) -> SlicePort:
        fields.text("protocol", default="TCP", enum=("TCP",))
        fields.text("appProtocol")
        port = fields.integer("port", required=True, minimum=1, maximum=65535)
        assert port is not None
        return SlicePort(fields.text("name", default="", max_len=63, pattern=DNS_LABEL) or "",
                         port)
    return item.obj(parse)
