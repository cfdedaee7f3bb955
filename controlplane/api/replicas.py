"""Several control planes serving one mesh (`--store etcd://...`): what each shares with the
others through the store's presence entries (controlplane/store/presence.py).

- `SharedEndpointsCache`: the mesh cache whose Service endpoints are every replica's
  registered sidecars and workloads, not only its own: a sidecar connected to replica A is an
  endpoint for callers connected to B. The union is recompiled when any replica's entries
  change. A workload's entry is `namespace/name/address`, its value its labels and ports
  (JSON).
- `ReplicaDirectory`: every connected proxy of the mesh (`pointsman status`, Programmed): this
  replica's, evaluated now, and the others' as they last published them; and the control
  planes that are up. It publishes this replica's own records a moment after they change
  (coalesced), and its own entry (id, version, the store revision it serves).

With one control plane (`LocalPresence`) the same code shares nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from controlplane import logs
from controlplane.api.proxies import ControlPlaneInfo, ProxyRecord, ProxyTracker
from controlplane.mesh.compile.memo import Endpoints, Workload
from controlplane.sources.mesh import MeshCache
from controlplane.store.presence import LocalPresence

ENDPOINT, PROXY, REPLICA, WORKLOAD = "endpoint", "proxy", "replica", "workload"
PUBLISH_DELAY = 0.1  # seconds: changes within it go out together


class SharedEndpointsCache(MeshCache):
    def __init__(self) -> None:
        super().__init__()
        self.presence: LocalPresence | None = None
        self._published: set[str] = set()
        self._published_workloads: dict[str, bytes] = {}

    def share(self, presence: LocalPresence) -> None:
        self.presence = presence
        presence.on_change.append(self._presence_changed)

    def _flush_endpoints(self) -> None:
        """(MeshCache calls this when its own registrations changed, once per debounced burst.)"""
        if self.presence is None:
            super()._flush_endpoints()
            return
        self._publish_pending = False
        local = {f"{namespace}/{name}/{address}"
                 for (namespace, name), address in self._endpoint_counts}
        for entry in sorted(local - self._published):
            self.presence.set(ENDPOINT, entry, b"")
        for entry in sorted(self._published - local):
            self.presence.set(ENDPOINT, entry, None)
        self._published = local
        self._publish_workloads()

    def _publish_workloads(self) -> None:
        assert self.presence is not None
        local = {f"{namespace}/{item.name}/{item.instance_ip}": json.dumps(
            {"labels": dict(item.labels), "ports": dict(item.ports)}, sort_keys=True).encode()
            for namespace, item in self._workload_counts}
        for entry, value in sorted(local.items()):
            if self._published_workloads.get(entry) != value:
                self.presence.set(WORKLOAD, entry, value)
        for entry in sorted(self._published_workloads.keys() - local.keys()):
            self.presence.set(WORKLOAD, entry, None)
        self._published_workloads = local

    def _presence_changed(self, kind: str) -> None:
        if kind not in (ENDPOINT, WORKLOAD) or self.presence is None:
            return
        by_service: dict[tuple[str, str], set[str]] = {}
        for _replica, entry in self.presence.entries(ENDPOINT):
            namespace, name, address = entry.split("/", 2)
            by_service.setdefault((namespace, name), set()).add(address)
        wanted = {key: tuple(sorted(value)) for key, value in by_service.items()}
        workloads = self._shared_workloads()
        if wanted == self.compiler.endpoints.by_service \
                and workloads == self.compiler.endpoints.workloads:
            return
        endpoints = Endpoints()
        endpoints.by_service = wanted
        endpoints.workloads = workloads
        self.compiler.update(endpoints=endpoints)
        with self._change("endpoints"):
            self._recompile()


    def _shared_workloads(self) -> dict[str, tuple[Workload, ...]]:
        assert self.presence is not None
        found: dict[str, set[Workload]] = {}
        for (_replica, entry), value in self.presence.entries(WORKLOAD).items():
            namespace, name, address = entry.split("/", 2)
            try:
                data = json.loads(value)
                workload = Workload(name, address, tuple(sorted(data["labels"].items())),
                                    tuple(sorted(data["ports"].items())))
            except (ValueError, TypeError, KeyError, AttributeError):
                continue  # another replica's malformed entry: not an endpoint
            found.setdefault(namespace, set()).add(workload)
        return {key: tuple(sorted(value)) for key, value in found.items()}


class ReplicaDirectory:
    def __init__(self, tracker: ProxyTracker, presence: LocalPresence, cache: MeshCache,
                 info: Callable[[], ControlPlaneInfo]) -> None:
        self.tracker = tracker
        self.presence = presence
        self.info = info
        self._dirty = asyncio.Event()
        self._published: dict[str, bytes] = {}
        tracker.on_change.append(self._dirty.set)
        cache.watch(self._dirty.set)
        self._dirty.set()  # this replica's own entry, at start

    @property
    def version(self) -> int:
        return self.tracker.version + self.presence.version

    def records(self) -> list[ProxyRecord]:
        """This replica's proxies, then the others' (a node id once: ours, else the latest
        connection, as a dead replica's entries outlive it until its lease expires)."""
        own = self.tracker.records()
        seen = {record.node_id for record in own}
        others: dict[str, ProxyRecord] = {}
        for (replica, _name), value in self.presence.entries(PROXY).items():
            if replica == self.presence.replica:
                continue
            try:
                record = ProxyRecord.from_dict(json.loads(value))
            except (ValueError, TypeError, KeyError):
                continue
            found = others.get(record.node_id)
            if record.node_id not in seen and (found is None
                                               or found.connected_at < record.connected_at):
                others[record.node_id] = record
        return own + sorted(others.values(), key=lambda record: record.node_id)

    def control_planes(self) -> list[ControlPlaneInfo]:
        out = [self.info()]
        for (replica, _name), value in sorted(self.presence.entries(REPLICA).items()):
            if replica == self.presence.replica:
                continue
            try:
                out.append(ControlPlaneInfo(**json.loads(value)))
            except (ValueError, TypeError):
                continue
        return out

    async def run(self) -> None:
        if not self.presence.shared:
            await asyncio.Event().wait()
        while True:
            await self._dirty.wait()
            await asyncio.sleep(PUBLISH_DELAY)
            self._dirty.clear()
            try:
                self.publish()
            except Exception:  # a bug here must not stop serving: log it, try next time
                logs.event("presence_publish_failed", logging.ERROR)
                logging.getLogger("pointsman.controlplane.api").exception("publish")

    def publish(self) -> None:
        info = self.info()
        self.presence.set(REPLICA, info.id, json.dumps(info.to_dict()).encode())
        current = {record.node_id: json.dumps(record.to_dict()).encode()
                   for record in self.tracker.records()}
        for node, value in current.items():
            if self._published.get(node) != value:
                self.presence.set(PROXY, node, value)
        for node in set(self._published) - set(current):
            self.presence.set(PROXY, node, None)
        self._published = current
