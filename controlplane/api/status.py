"""Each object's status, Gateway API style: conditions with reasons and observedGeneration.

- `Accepted` and `ResolvedRefs` come from the resolver (controlplane.mesh.status: routes'
  parents, Gateway listeners, policies' targets). Kinds the resolver gives no condition
  (Service, EndpointSlice, Secret, ReferenceGrant, GatewayClass) are Accepted once stored; a
  Gateway's ResolvedRefs sums up its listeners'.
"""

from __future__ import annotations

from typing import Any

from controlplane.mesh import MeshObject, ObjectKey, status
from controlplane.sources.mesh import MeshCache


def condition(kind: str, ok: bool, reason: str, message: str, generation: int
              ) -> dict[str, Any]:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason,
            "message": message, "observedGeneration": generation}


class StatusView:
    def __init__(self, cache: MeshCache) -> None:
        self.cache = cache

    def of(self, key: ObjectKey, obj: MeshObject | None, unreadable: str = "") -> dict[str, Any]:
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
        out["conditions"] = conditions
        return out


def _resolved(out: dict[str, Any], generation: int) -> dict[str, Any]:
    """ResolvedRefs for kinds whose references the resolver reports elsewhere (a Gateway's
    listeners), or that have none."""
    for listener in out.get("listeners", []):
        for item in listener.get("conditions", []):
            if item["type"] == "ResolvedRefs" and item["status"] != "True":
                return condition("ResolvedRefs", False, item["reason"],
                                 f"listener {listener['name']}: {item['message']}", generation)
    return condition("ResolvedRefs", True, "ResolvedRefs", "", generation)
