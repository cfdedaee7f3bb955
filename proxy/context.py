"""What a filter may reach at run time: one `ServerContext` per worker process.

Built by `proxy.server` and handed to network-filter factories. Every member is a narrow,
latest-value view: config updates swap immutable snapshots behind these objects, so a request
already in flight keeps the snapshot it started with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from proxy.stats import Stats


class RouteProvider(Protocol):
    def get(self, name: str) -> Any | None:
        """The current RouteConfig model (proxy.model.route) named `name`, or None (not yet)."""


class SecretProvider(Protocol):
    def get(self, name: str) -> Any | None:
        """The current Secret model named `name`, or None."""


@dataclass(frozen=True)
class NodeInfo:
    id: str = ""
    cluster: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    locality: tuple[str, str, str] = ("", "", "")  # region, zone, sub_zone


@dataclass
class ServerContext:
    stats: Stats
    node: NodeInfo
    cluster_manager: Any  # proxy.upstream.manager.ClusterManager
    routes: RouteProvider
    secrets: SecretProvider
    # proxy.observability hooks (tracing, access logs); no-op by default.
    observability: Any = None
    # proxy.upstream.pools.PoolManager: upstream HTTP connection pools shared by every HTTP
    # connection manager of this worker; created on first use, closed by the server.
    http_pools: Any = None
