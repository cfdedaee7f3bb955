"""The xDS resource types the sidecar takes, one descriptor each.

What differs between LDS, CDS, RDS and EDS for the ADS client and the server (proxy.server) is
data, kept here rather than in branches on type URLs: the short name used in errors and logs,
Envoy's stat scope for the type's updates (docs: config/cluster_manager/cluster_stats,
configuration/listeners/lds, configuration/http/http_conn_man/rds, and eds), the translator
into the typed model (proxy.model), how a resource's own name is read, and whether a delta
resource must carry that name.

A type missing here is refused (ConfigError -> NACK) with its type URL. Adding a type is one
entry here and one apply step in the server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from protos.errors import ConfigError
from protos.registry import (
    CLUSTER,
    CLUSTER_LOAD_ASSIGNMENT,
    LISTENER,
    ROUTE_CONFIGURATION,
    SECRET,
)
from proxy.model.cluster import translate_cluster
from proxy.model.endpoint import translate_cluster_load_assignment
from proxy.model.listener import translate_listener
from proxy.model.route import translate_route_configuration
from proxy.model.secret import translate_secret


@dataclass(frozen=True)
class ResourceType:
    type_url: str
    short_name: str  # "LDS": how errors, logs and /config_dump's callers know it
    stat_scope: str  # Envoy's scope for update_success, update_rejected, ...
    translate: Callable[[Message], Any]  # protobuf -> the frozen model; ConfigError names a field
    name_field: str  # the model's (and message's) field holding the resource's own name
    # RDS and EDS resources are asked for by name: one sent under a delta name that is not its
    # own is refused (Envoy: "Unexpected RDS configuration", "Unexpected EDS cluster"). Listeners
    # and clusters are known by their own name, whatever the delta name.
    named_by_subscription: bool

    def name_of(self, model: Any) -> str:
        return str(getattr(model, self.name_field))


RESOURCE_TYPES: dict[str, ResourceType] = {item.type_url: item for item in (
    ResourceType(LISTENER, "LDS", "listener_manager.lds.", translate_listener, "name", False),
    ResourceType(CLUSTER, "CDS", "cluster_manager.cds.", translate_cluster, "name", False),
    ResourceType(ROUTE_CONFIGURATION, "RDS", "rds.", translate_route_configuration, "name",
                 True),
    ResourceType(CLUSTER_LOAD_ASSIGNMENT, "EDS", "eds.", translate_cluster_load_assignment,
                 "cluster_name", True),
    # SDS secrets are asked for by name, like RDS (configuration/security/secret)
    ResourceType(SECRET, "SDS", "sds.", translate_secret, "name", True),
)}


def resource_type(type_url: str) -> ResourceType:
    """The descriptor of `type_url`; ConfigError (a NACK) for a type the sidecar does not take."""
    try:
        return RESOURCE_TYPES[type_url]
    except KeyError:
        raise ConfigError(f"resource type {type_url!r} is not supported") from None


def short_name(type_url: str) -> str:
    """LDS, CDS, ...; the type URL itself for a type the sidecar does not take."""
    known = RESOURCE_TYPES.get(type_url)
    return known.short_name if known is not None else type_url
