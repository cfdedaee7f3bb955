"""Cluster (CDS): named by `name`; an EDS cluster references its ClusterLoadAssignment."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf.message import Message

from controlplane.resources.base import ResourceType, require_name
from controlplane.resources.walk import Reference, find_references
from protos import registry
from protos.errors import ConfigError

Cluster = cluster_pb2.Cluster


def name_of(message: Message) -> str:
    return str(message.name)  # type: ignore[attr-defined]


def eds_service_name(cluster: cluster_pb2.Cluster) -> str:
    """cluster.proto EdsClusterConfig.service_name: "Optional alternative to cluster name"."""
    return cluster.eds_cluster_config.service_name or cluster.name


def eds_service_name_of_packed(value: bytes) -> str | None:
    """The ClusterLoadAssignment name of a serialised cluster, None when it is not EDS."""
    cluster = Cluster.FromString(value)
    return eds_service_name(cluster) if cluster.type == Cluster.EDS else None


def references(message: Message) -> list[Reference]:
    assert isinstance(message, Cluster)
    found = find_references(message)
    if message.type == Cluster.EDS:
        field = ("eds_cluster_config.service_name" if message.eds_cluster_config.service_name
                 else "name")
        found.append(Reference(registry.CLUSTER_LOAD_ASSIGNMENT, eds_service_name(message), field))
    return found


def validate(message: Message) -> None:
    assert isinstance(message, Cluster)
    require_name(message.name)
    if message.HasField("cluster_type"):
        raise ConfigError("custom cluster types are not supported by Pointsman",
                          field="cluster_type")
    if message.type == Cluster.EDS:
        if not message.eds_cluster_config.HasField("eds_config"):
            raise ConfigError("an EDS cluster needs eds_cluster_config.eds_config (e.g. ads: {})",
                              field="eds_cluster_config.eds_config")
        if message.HasField("load_assignment"):
            raise ConfigError("an EDS cluster takes its endpoints from EDS, not load_assignment",
                              field="load_assignment")
    elif message.type in (Cluster.STATIC, Cluster.STRICT_DNS, Cluster.LOGICAL_DNS):
        if not message.HasField("load_assignment"):
            raise ConfigError("a STATIC or DNS cluster needs a load_assignment",
                              field="load_assignment")
    find_references(message)  # every typed_config must resolve


CLUSTER = ResourceType(
    type_url=registry.CLUSTER, short_name="cluster", message_class=Cluster, name_of=name_of,
    references=references, validate=validate, full_set=True,
)
