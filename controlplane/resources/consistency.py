"""A set of resources is published only when consistent: unique names, no dangling references.

Errors name the file, the resource and the field (protos.errors.ConfigError). A node group's
resources are checked against the shared set they are laid over (`check_group`), which was
checked once on its own: the cost of a group is that of its own resources.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from google.protobuf.message import Message

from controlplane.resources import BY_TYPE_URL, Reference
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
    # What it names (computed once, when the file is read): the checks across files and
    # groups look names up instead of walking the message again.
    references: tuple[Reference, ...] | None = field(default=None, compare=False)

    @property
    def field(self) -> str:
        return f"resources[{self.index}]"

    def referenced(self) -> tuple[Reference, ...]:
        if self.references is not None:
            return self.references
        return tuple(BY_TYPE_URL[self.type_url].references(self.message))


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


def check_references(index: Index, under: Index | None = None) -> None:
    """Every name a resource refers to (RDS route, route cluster, EDS assignment, SDS secret)
    must exist in the same set (or in `under`, the shared set a group is laid over), or
    clients would wait for it forever."""
    for type_url in sorted(index):
        for name in sorted(index[type_url]):
            resource = index[type_url][name]
            for reference in resource.referenced():
                if not _exists(reference, index, under):
                    target = BY_TYPE_URL[reference.type_url].message_class.DESCRIPTOR.name
                    raise ConfigError(f"names {target} {reference.name!r}, which does not exist",
                                      field=f"{resource.field}.{reference.field}",
                                      resource=name, source=resource.source)


def _exists(reference: Reference, index: Index, under: Index | None) -> bool:
    if reference.name in index.get(reference.type_url, {}):
        return True
    return under is not None and reference.name in under.get(reference.type_url, {})


def check_group(shared: Index, group: Index,
                addresses: Mapping[AddressKey, LoadedResource]) -> None:
    """A node group's own resources over the (already checked) shared set: its references
    resolve in the overlay, and its listeners bind addresses no other listener of the overlay
    binds (`addresses`: the shared listeners', from `listener_addresses(shared)`, computed
    once). Shared resources cannot break: a group only adds names or replaces them."""
    check_references(group, under=shared)
    check_listener_addresses({LISTENER_TYPE: group.get(LISTENER_TYPE, {})}, under=addresses)


AddressKey = tuple[str, int, int]


def _address(resource: LoadedResource) -> AddressKey | None:
    message = resource.message
    if not message.HasField("address") or not message.address.HasField(  # type: ignore[attr-defined]
            "socket_address"):
        return None
    socket = message.address.socket_address  # type: ignore[attr-defined]
    if socket.port_value == 0:
        return None
    return (socket.address, socket.port_value, socket.protocol)


def listener_addresses(index: Index) -> dict[AddressKey, LoadedResource]:
    """Which listener binds each address (the first by name)."""
    owners: dict[AddressKey, LoadedResource] = {}
    for name in sorted(index.get(LISTENER_TYPE, {})):
        key = _address(index[LISTENER_TYPE][name])
        if key is not None:
            owners.setdefault(key, index[LISTENER_TYPE][name])
    return owners


def check_listener_addresses(index: Index,
                             under: Mapping[AddressKey, LoadedResource] | None = None) -> None:
    """Two listeners may not bind the same address: Envoy refuses the whole LDS update ("has
    duplicate address ... as existing listener"), so we refuse the file instead. `under`:
    the shared listeners' addresses a group's own are checked against."""
    owners: dict[AddressKey, LoadedResource] = {}
    own = index.get(LISTENER_TYPE, {})
    for name in sorted(own):
        resource = own[name]
        key = _address(resource)
        if key is None:
            continue
        first = owners.get(key)
        if first is None and under is not None and key in under \
                and under[key].name not in own:  # a shared listener the group does not replace
            first = under[key]
        if first is not None:
            raise ConfigError(f"address {key[0]}:{key[1]} is already bound by "
                              f"listener {first.name!r} ({first.source})",
                              field=f"{resource.field}.address.socket_address",
                              resource=name, source=resource.source)
        owners[key] = resource


def messages_by_type(index: Index) -> Mapping[str, Mapping[str, Message]]:
    return {type_url: {name: item.message for name, item in by_name.items()}
            for type_url, by_name in index.items()}
