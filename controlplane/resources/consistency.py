"""A set of resources is published only when consistent: unique names, no dangling references.

Errors name the file, the resource and the field (protos.errors.ConfigError).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from google.protobuf.message import Message

from controlplane.resources import BY_TYPE_URL
from protos.errors import ConfigError
from protos.registry import LISTENER as LISTENER_TYPE


@dataclass(frozen=True)
class LoadedResource:
    """A validated resource and where it came from (`source` file, `index` in its list)."""

    type_url: str
    name: str
    message: Message
    source: str
    index: int

    @property
    def field(self) -> str:
        return f"resources[{self.index}]"


Index = dict[str, dict[str, LoadedResource]]  # type_url -> name -> resource


def index_unique(resources: Iterable[LoadedResource]) -> Index:
    """Index by type and name; the same name twice for one type is an error."""
    index: Index = {}
    for resource in resources:
        by_name = index.setdefault(resource.type_url, {})
        first = by_name.get(resource.name)
        if first is not None:
            raise ConfigError(
                f"duplicate {BY_TYPE_URL[resource.type_url].short_name} name, first defined in "
                f"{first.source} {first.field}", field=f"{resource.field}.name",
                resource=resource.name, source=resource.source)
        by_name[resource.name] = resource
    return index


def overlay(shared: Index, group: Index) -> Index:
    """A node group's resources replace shared ones of the same type and name, or add to them."""
    merged: Index = {type_url: dict(by_name) for type_url, by_name in shared.items()}
    for type_url, by_name in group.items():
        merged.setdefault(type_url, {}).update(by_name)
    return merged


def check_references(index: Index) -> None:
    """Every name a resource refers to (RDS route, route cluster, EDS assignment, SDS secret)
    must exist in the same set, or clients would wait for it forever."""
    for type_url in sorted(index):
        kind = BY_TYPE_URL[type_url]
        for name in sorted(index[type_url]):
            resource = index[type_url][name]
            for reference in kind.references(resource.message):
                if reference.name not in index.get(reference.type_url, {}):
                    target = BY_TYPE_URL[reference.type_url].message_class.DESCRIPTOR.name
                    raise ConfigError(f"names {target} {reference.name!r}, which does not exist",
                                      field=f"{resource.field}.{reference.field}",
                                      resource=name, source=resource.source)


def check_listener_addresses(index: Index) -> None:
    """Two listeners may not bind the same address: Envoy refuses the whole LDS update ("has
    duplicate address ... as existing listener"), so we refuse the file instead."""
    owners: dict[tuple[str, int, int], LoadedResource] = {}
    for name in sorted(index.get(LISTENER_TYPE, {})):
        resource = index[LISTENER_TYPE][name]
        message = resource.message
        if not message.HasField("address") or not message.address.HasField(  # type: ignore[attr-defined]
                "socket_address"):
            continue
        socket = message.address.socket_address  # type: ignore[attr-defined]
        key = (socket.address, socket.port_value, socket.protocol)
        first = owners.get(key)
        if first is not None and socket.port_value != 0:
            raise ConfigError(f"address {socket.address}:{socket.port_value} is already bound by "
                              f"listener {first.name!r} ({first.source})",
                              field=f"{resource.field}.address.socket_address",
                              resource=name, source=resource.source)
        owners[key] = resource


def messages_by_type(index: Index) -> Mapping[str, Mapping[str, Message]]:
    return {type_url: {name: item.message for name, item in by_name.items()}
            for type_url, by_name in index.items()}
