"""Each object's status, Gateway API style: conditions with reasons and observedGeneration.

- `Accepted` and `ResolvedRefs` come from the resolver (controlplane.mesh.status: routes'
  parents, Gateway listeners, policies' targets). Kinds the resolver gives no condition
  (Service, EndpointSlice, Secret, ReferenceGrant, GatewayClass) are Accepted once stored; a
  Gateway's ResolvedRefs sums up its listeners'.
- `Programmed` says whether the proxies it concerns run it: the connected sidecars and Gateway
  proxies (of every replica) whose resources were compiled from the object
  (controlplane/mesh/compile/deps.py). True (Programmed) once each of them has ACKed a mesh at
  least as new as the object's last change (its resourceVersion); False (Pending) while some
  have not; False (Invalid) when a proxy NACKed resources made from it since its last good
  configuration, with the proxy and the error (a Gateway whose proxy cannot bind its
  address, EADDRNOTAVAIL: AddressNotUsable); False (Invalid) when the object is not Accepted.
  An object no connected proxy uses is Programmed (nothing is waiting for it).
- A Gateway's `addresses`: its IPAddress values, else the instance_ip of its connected proxies.

Every condition carries lastTransitionTime (controlplane/api/transitions.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format

from controlplane.api.proxies import ProxyRecord
from controlplane.api.transitions import Transitions
from controlplane.mesh import MeshObject, ObjectKey, status
from controlplane.mesh.compile.deps import Provenance
from controlplane.sources.mesh import MeshCache


class Proxies(Protocol):
    @property
    def version(self) -> int:
        """Changes whenever the records may have."""

    def records(self) -> list[ProxyRecord]: ...


def condition(kind: str, ok: bool, reason: str, message: str, generation: int
              ) -> dict[str, Any]:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason,
            "message": message, "observedGeneration": generation}


class StatusView:
    def __init__(self, cache: MeshCache, proxies: Proxies | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cache = cache
        self.proxies = proxies
        self.transitions = Transitions(clock)
        self._transitions_generation = -1
        self.provenance = Provenance(lambda: cache.compiler.memo)  # the current one
        self._records: tuple[tuple[int, int], list[ProxyRecord]] = ((-1, -1), [])
        self._deps: dict[tuple[str, str, str, str, str, str], frozenset[ObjectKey]] = {}
        self._deps_generation = -1

    def of(self, key: ObjectKey, obj: MeshObject | None, unreadable: str = "",
           revision: int = 0) -> dict[str, Any]:
        if obj is None:
            return {"conditions": [condition("Accepted", False, "Invalid", unreadable
                                             or "the stored object does not load", 0)]}
        out = status(self.cache.mesh, obj)
        conditions: list[dict[str, Any]] = list(out.get("conditions", []))  # type: ignore
        generation = obj.meta.generation
        types = {item["type"] for item in conditions}
        if "Accepted" not in types:
            conditions.insert(0, condition("Accepted", True, "Accepted", "", generation))
        if "ResolvedRefs" not in types:
            conditions.insert(1, _resolved(out, generation))
        if self.proxies is not None:
            accepted = next(item for item in conditions if item["type"] == "Accepted")
            conditions.append(self._programmed(key, accepted["status"] == "True", revision,
                                               generation))
        out["conditions"] = conditions
        if obj.kind == "Gateway" and not out.get("addresses"):
            out["addresses"] = self._proxy_addresses(key)
        if self._transitions_generation != self.cache.mesh_generation:
            self.transitions.forget_all_but(self.cache.mesh.objects)
            self._transitions_generation = self.cache.mesh_generation
        self.transitions.stamp(key, obj.meta.creation_timestamp, out)
        return out

    def _proxy_addresses(self, key: ObjectKey) -> list[dict[str, str]]:
        """A Gateway that asks for no address (none, or one without a value: GatewaySpecAddress
        "the implementation SHOULD automatically assign") is where its connected proxies bind:
        their instance_ip."""
        found = sorted({proxy.address for proxy in self.records()
                        if proxy.kind == "Gateway" and proxy.namespace == key.namespace
                        and proxy.name == key.name and proxy.address})
        return [{"type": "IPAddress", "value": address} for address in found]

    # ---- Programmed -------------------------------------------------------------------------

    def _programmed(self, key: ObjectKey, accepted: bool, revision: int, generation: int
                    ) -> dict[str, Any]:
        if not accepted:  # a ListenerSet says why (listenerset_types.go: NotAllowed, ...)
            reason = self._accepted_reason(key) if key.kind == "ListenerSet" else "Invalid"
            return condition("Programmed", False, reason, "not Accepted", generation)
        affected = [proxy for proxy in self.records() if key in self.deps(proxy)]
        refusals = [(proxy, item) for proxy in affected for item in proxy.types
                    if key in item.suspects and item.nacked_revision >= revision]
        if refusals:
            proxy, item = refusals[0]
            others = len({other.node_id for other, _ in refusals}) - 1
            more = f" (and {others} more proxies)" if others else ""
            return condition("Programmed", False, _refusal_reason(key, item.error),
                             f"{proxy.node_id} NACKed {item.type}: {item.error}{more}",
                             generation)
        pending = [proxy for proxy in affected if proxy.synced_revision < revision]
        if pending:
            names = ", ".join(proxy.node_id for proxy in pending[:3])
            return condition("Programmed", False, "Pending",
                             f"{len(pending)} of {len(affected)} proxies have not ACKed it yet "
                             f"({names}{', ...' if len(pending) > 3 else ''})", generation)
        message = (f"ACKed by {len(affected)} proxies" if affected
                   else "no connected proxy uses it")
        return condition("Programmed", True, "Programmed", message, generation)

    def _accepted_reason(self, key: ObjectKey) -> str:
        found = [item for item in self.cache.mesh.conditions.get(key, [])
                 if item.type == "Accepted"]
        return found[0].reason if found else "Invalid"

    def records(self) -> list[ProxyRecord]:
        """The proxies' records, evaluated again only when they or the mesh changed."""
        if self.proxies is None:
            return []
        stamp, records = self._records
        now = (self.proxies.version, self.cache.generation)
        if stamp != now:
            records = self.proxies.records()
            self._records = (now, records)
        return records

    def deps(self, proxy: ProxyRecord) -> frozenset[ObjectKey]:
        """The objects a proxy's resources were compiled from (same for every sidecar of a
        Service: the addresses change names, not sources)."""
        if not proxy.kind:
            return frozenset()
        if self._deps_generation != self.cache.mesh_generation:
            self._deps, self._deps_generation = {}, self.cache.mesh_generation
        identity = (proxy.kind, proxy.namespace, proxy.name, proxy.address, proxy.app_ip,
                    proxy.outbound_ip)
        found = self._deps.get(identity)
        if found is None:
            snapshot = self.cache.snapshot_for(node_of(proxy))
            resources = [resource for typed in snapshot.types.values()
                         for resource in typed.resources.values()]
            found = self._deps[identity] = self.provenance.objects_of_all(resources)
        return found


# strerror(EADDRNOTAVAIL) on Linux, in Envoy's and Pointsman's bind errors alike
NOT_LOCAL = "Cannot assign requested address"


def _refusal_reason(key: ObjectKey, error: str) -> str:
    """A Gateway whose proxy cannot bind its listeners' address: AddressNotUsable
    (gateway_types.go GatewayReasonAddressNotUsable, "one or more Addresses cannot be used";
    GatewayStaticAddresses); any other refusal: Invalid."""
    return "AddressNotUsable" if key.kind == "Gateway" and NOT_LOCAL in error else "Invalid"


def node_of(proxy: ProxyRecord) -> base_pb2.Node:
    """The xDS node a proxy record stands for (what its bootstrap says)."""
    node = base_pb2.Node(id=proxy.node_id, cluster=proxy.name)
    metadata = {key: value for key, value in (
        ("namespace", proxy.namespace), ("kind", proxy.kind), ("instance_ip", proxy.address),
        ("app_ip", proxy.app_ip), ("outbound_ip", proxy.outbound_ip)) if value}
    json_format.ParseDict(metadata, node.metadata)
    return node


def _resolved(out: dict[str, Any], generation: int) -> dict[str, Any]:
    """ResolvedRefs for kinds whose references the resolver reports elsewhere (a Gateway's
    listeners), or that have none."""
    for listener in out.get("listeners", []):
        for item in listener.get("conditions", []):
            if item["type"] == "ResolvedRefs" and item["status"] != "True":
                return condition("ResolvedRefs", False, item["reason"],
                                 f"listener {listener['name']}: {item['message']}", generation)
    return condition("ResolvedRefs", True, "ResolvedRefs", "", generation)
