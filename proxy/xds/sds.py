"""SDS from its own config source: `sds_config.api_config_source` (api_type GRPC, one envoy_grpc
service naming a static cluster), a SecretDiscoveryService/StreamSecrets stream per cluster
(configuration/security/secret, "SDS configuration").

The stream speaks the same state-of-the-world protocol as ADS (proxy.xds.protocol), limited
to the Secret type and the names that the listeners and clusters ask of that cluster; the
grpcio adapter is proxy.xds.client's, with the SDS stub. `SdsStreams.refresh` starts a stream
for each cluster newly named and stops those no longer named; a stream whose set of names
changed is opened again with the new set (names change with LDS/CDS updates, rarely); their
tasks belong to the server's TaskSet (proxy.tasks).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from envoy.service.secret.v3 import sds_pb2_grpc

from protos.errors import ConfigError, unsupported
from protos.registry import SECRET
from proxy.xds.backoff import BackoffSettings, JitteredBackoff
from proxy.xds.client import AdsClient
from proxy.xds.protocol import AdsProtocol


@dataclass
class SdsProtocol(AdsProtocol):
    method = "StreamSecrets"  # envoy.service.secret.v3.SecretDiscoveryService


class ClusterSecrets:
    """The applier of one SDS stream: applies Secrets through the server, and asks for the
    names the configuration wants from `cluster`."""

    def __init__(self, server: Any, cluster: str) -> None:
        self.server = server
        self.cluster = cluster

    def apply(self, type_url: str, version: str, resources: tuple[Any, ...]) -> None:
        if type_url != SECRET:
            raise ConfigError(f"an SDS stream carries Secrets, not {type_url!r}")
        self.server.apply(type_url, version, resources)

    def apply_delta(self, *args: Any) -> None:  # pragma: no cover - SotW only
        raise ConfigError("SDS api_config_source streams are state of the world")

    def wanted_names(self, type_url: str) -> Iterable[str]:
        if type_url != SECRET:
            return ()
        return sorted({ref.name for ref in self.server.secret_refs()
                       if ref.source.cluster == self.cluster})


def targets_of(cluster: Any, field_name: str) -> tuple[str, ...]:
    """HOST:PORT of each inline endpoint of a static cluster (as the ADS cluster's)."""
    endpoints = [endpoint for group in (cluster.load_assignment.localities
                                        if cluster.load_assignment else ())
                 for endpoint in group.endpoints]
    if not endpoints:
        raise ConfigError(f"SDS cluster {cluster.name!r} needs an inline endpoint",
                          field=field_name)
    refuse_socket_matches(cluster, field_name)
    return tuple(f"[{item.address}]:{item.port}" if ":" in item.address
                 else f"{item.address}:{item.port}" for item in endpoints)


def refuse_socket_matches(cluster: Any, field_name: str) -> None:
    """A gRPC channel (ADS, SDS) uses one transport for the cluster: a per-endpoint socket
    (transport_socket_matches) would be ignored, so it is refused by name."""
    if getattr(cluster, "socket_matches", ()):
        raise unsupported(field_name, f"cluster {cluster.name!r} has transport_socket_matches, "
                          "which the xDS gRPC channel does not apply per endpoint")


class SdsStreams:
    def __init__(self, server: Any, spawn: Callable[[Any, str], Any],
                 credentials: Callable[[Any], Any]) -> None:
        self.server = server
        self.spawn = spawn  # TaskSet.spawn
        self.credentials = credentials
        self.running: dict[str, tuple[tuple[str, ...], Any]] = {}  # cluster -> names, task

    def __repr__(self) -> str:
        return f"SdsStreams({sorted(self.running)})"

    def refresh(self, wanted: dict[str, tuple[str, ...]]) -> None:
        """`wanted`: the secret names wanted from each SDS cluster."""
        for name, (names, task) in list(self.running.items()):
            if wanted.get(name) != names:
                task.cancel()
                del self.running[name]
        for name, names in sorted(wanted.items()):
            if name not in self.running:
                self.running[name] = (names, self._start(name))

    def close(self) -> None:
        for _names, task in self.running.values():
            task.cancel()
        self.running.clear()

    def _start(self, name: str) -> Any:
        cluster = self.server.static_clusters.get(name)
        if cluster is None:
            raise ConfigError(f"SDS cluster {name!r} is not a static cluster",
                              field="sds_config.api_config_source.grpc_services[0]."
                                    "envoy_grpc.cluster_name")
        targets = targets_of(cluster, "sds_config.api_config_source")
        protocol = SdsProtocol(self.server.bootstrap.node_proto)
        protocol.subscribe_wildcard([])
        client = AdsClient(targets[0], protocol, ClusterSecrets(self.server, name),
                           self.server.stats, credentials=self.credentials(cluster.upstream_tls),
                           backoff=JitteredBackoff(BackoffSettings(), random.Random()),
                           targets=targets, named_types=(SECRET,),
                           stub=sds_pb2_grpc.SecretDiscoveryServiceStub)
        return self.spawn(client.run(), f"SDS client ({name})")
