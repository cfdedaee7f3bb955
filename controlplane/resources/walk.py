"""Walk a protobuf message tree (unpacking `Any` typed_configs) and collect references.

References are what make a snapshot consistent: a listener names RouteConfigurations (RDS) and
clusters (tcp_proxy), a route names clusters, a cluster names its ClusterLoadAssignment (EDS),
transport sockets name Secrets (SDS). Each is reported with the dotted field path that holds it,
so a dangling reference error names the field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from protos import registry
from protos.errors import ConfigError
from protos.loader import unpack_any

ANY = "google.protobuf.Any"


@dataclass(frozen=True)
class Reference:
    """`field` of the referring resource names resource `name` of type `type_url`."""

    type_url: str
    name: str
    field: str


def walk(message: Message, path: str = "") -> Iterator[tuple[str, Message]]:
    """Yield (path, message) for `message` and every message inside it, Any unpacked."""
    if message.DESCRIPTOR.full_name == ANY:
        if not message.type_url:  # type: ignore[attr-defined]
            return
        try:
            inner = unpack_any(message, field=path)  # type: ignore[arg-type]
        except ConfigError as error:
            raise ConfigError(error.message, field=path) from error
        yield from walk(inner, path)
        return
    yield path, message
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        child = f"{path}.{field.name}" if path else field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                if isinstance(item, Message):
                    yield from walk(item, f"{child}[{key!r}]")
        elif field.is_repeated:
            for index, item in enumerate(value):
                yield from walk(item, f"{child}[{index}]")
        else:
            yield from walk(value, child)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _route_action(path: str, msg: Message) -> Iterator[Reference]:
    if getattr(msg, "cluster", ""):
        yield Reference(registry.CLUSTER, msg.cluster, _join(path, "cluster"))  # type: ignore[attr-defined]
    for index, mirror in enumerate(msg.request_mirror_policies):  # type: ignore[attr-defined]
        if mirror.cluster:
            yield Reference(registry.CLUSTER, mirror.cluster,
                            _join(path, f"request_mirror_policies[{index}].cluster"))


def _named(type_url: str, attribute: str) -> Callable[[str, Message], Iterator[Reference]]:
    def extract(path: str, msg: Message) -> Iterator[Reference]:
        value = getattr(msg, attribute)
        if value:
            yield Reference(type_url, value, _join(path, attribute))
    return extract


def _sds_secret(path: str, msg: Message) -> Iterator[Reference]:
    # An SdsSecretConfig without sds_config names a static bootstrap secret, not an xDS one.
    if msg.HasField("sds_config") and msg.name:  # type: ignore[attr-defined]
        yield Reference(registry.SECRET, msg.name, _join(path, "name"))  # type: ignore[attr-defined]


# Keyed by the message's full proto name: where other xDS resources are named.
EXTRACTORS: dict[str, Callable[[str, Message], Iterator[Reference]]] = {
    "envoy.config.route.v3.RouteAction": _route_action,
    "envoy.config.route.v3.WeightedCluster.ClusterWeight": _named(registry.CLUSTER, "name"),
    "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy": _named(registry.CLUSTER, "cluster"),
    "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.ClusterWeight":
        _named(registry.CLUSTER, "name"),
    "envoy.extensions.filters.network.http_connection_manager.v3.Rds":
        _named(registry.ROUTE_CONFIGURATION, "route_config_name"),
    "envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig": _sds_secret,
}


def find_references(message: Message) -> list[Reference]:
    """Every reference to another xDS resource anywhere inside `message`."""
    found: list[Reference] = []
    for path, msg in walk(message):
        extractor = EXTRACTORS.get(msg.DESCRIPTOR.full_name)
        if extractor is not None:
            found.extend(extractor(path, msg))
    return found


# Config that makes a client ask this server for a resource type it does not serve: the client
# would wait for it forever, so it is refused by name (xDS types beyond LDS/RDS/CDS/EDS/SDS).
NOT_SERVED: dict[str, str] = {
    "envoy.config.core.v3.ExtensionConfigSource": "extension config discovery (ECDS)",
    "envoy.config.route.v3.Vhds": "virtual host discovery (VHDS)",
    "envoy.config.endpoint.v3.LedsClusterLocalityConfig": "locality endpoint discovery (LEDS)",
    "envoy.extensions.filters.network.http_connection_manager.v3.ScopedRoutes":
        "scoped route discovery (SRDS)",
}


def check_served(message: Message) -> None:
    """Refuse a resource that needs an xDS type this control plane does not serve."""
    for path, inner in walk(message):
        what = NOT_SERVED.get(inner.DESCRIPTOR.full_name)
        if what is not None:
            raise ConfigError(f"{what} is not served by Pointsman's control plane", field=path)
