"""An in-process sidecar for L7 tests: real ClusterManager, the HCM factory, a loopback
listener that hands accepted sockets to `on_new_connection` (until tests run the spine)."""

from __future__ import annotations

import asyncio
import itertools
import socket
import ssl
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from protos.loader import parse_message
from proxy.context import NodeInfo, ServerContext
from proxy.model.cluster import translate_cluster
from proxy.network.base import DownstreamConnection, factory_for
from proxy.network.hcm_config import CONFIG_TYPE
from proxy.network.http_connection_manager import pools_of
from proxy.stats import Stats
from proxy.upstream.manager import ClusterManager
from tests.support.bootstraps import H2_OPTIONS, static_cluster  # noqa: F401 (re-exported)


class Routes:
    def __init__(self) -> None:
        self.configs: dict[str, Any] = {}

    def get(self, name: str) -> Any | None:
        return self.configs.get(name)


def hcm(routes: dict[str, Any] | None = None, *, filters: list[dict[str, Any]] | None = None,
        **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "stat_prefix": "ingress",
        "http_filters": [*(filters or []), {"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
        **extra,
    }
    if routes is not None:
        config["route_config"] = routes
    return config


def simple_routes(*routes: dict[str, Any], **vhost: Any) -> dict[str, Any]:
    return {"name": "local", "virtual_hosts": [
        {"name": "all", "domains": ["*"], "routes": list(routes), **vhost}]}


class Sidecar:
    def __init__(self, hcm_config: dict[str, Any], clusters: list[dict[str, Any]], *,
                 observability: Any = None, server_ssl: ssl.SSLContext | None = None) -> None:
        self.server_ssl = server_ssl
        self.stats = Stats()
        self.manager = ClusterManager(self.stats)
        self.manager.update([translate_cluster(parse_message(c, cluster_pb2.Cluster))
                             for c in clusters])
        self.routes = Routes()
        self.context = ServerContext(self.stats, NodeInfo(), self.manager, self.routes,
                                     Routes(), observability)
        factory = factory_for(CONFIG_TYPE)
        self.config = factory.translate(parse_message(hcm_config,
                                                      hcm_pb2.HttpConnectionManager))
        self.filter = factory.create(self.config, self.context)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self._ids = itertools.count(1)
        self._accepting: asyncio.Task[None] | None = None
        self.connections: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Sidecar:
        self._accepting = asyncio.create_task(self._accept())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._accepting is not None
        self._accepting.cancel()
        for task in list(self.connections):
            task.cancel()
        await asyncio.gather(self._accepting, *self.connections, return_exceptions=True)
        pools_of(self.context).close()
        await self.manager.close()
        self.listener.close()

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            sock, address = await loop.sock_accept(self.listener)
            sock.setblocking(False)
            connection = DownstreamConnection(sock, address[:2], ("127.0.0.1", self.port),
                                              "test", next(self._ids),
                                              server_ssl=self.server_ssl)
            task = asyncio.create_task(self.filter.on_new_connection(connection))
            self.connections.add(task)
            task.add_done_callback(self.connections.discard)

    def counter(self, name: str) -> int:
        found = self.stats.counters.get(name)
        return found.value if found else 0
