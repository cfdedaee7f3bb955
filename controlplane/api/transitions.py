"""lastTransitionTime for status conditions, as metav1.Condition defines it: "the last time
the condition transitioned from one status to another" (k8s.io/apimachinery
pkg/apis/meta/v1/types.go, Condition; Gateway API conditions are metav1.Conditions).

Conditions are computed afresh on every read, so the moment each one last changed status is
remembered here, per object (its key and creationTimestamp: a recreated object starts
afresh), per place in its status (the object, a route parent, a Gateway listener) and per
condition type. Kept in memory by each control plane: after a restart, or on another replica,
the time is when that control plane first saw the condition in its current status.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Container
from typing import Any

from controlplane.api.objects import now_timestamp
from controlplane.mesh import ObjectKey

Place = tuple[ObjectKey, str, str, str]  # (object, creationTimestamp, where, condition type)


class Transitions:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._seen: dict[Place, tuple[str, str]] = {}  # -> (status, lastTransitionTime)

    def stamp(self, key: ObjectKey, created: str, out: dict[str, Any]) -> None:
        """Add lastTransitionTime to every condition of a status (`out`, changed in place)."""
        self._stamp(key, created, "", out.get("conditions", []))
        for parent in out.get("parents", []):
            where = "parent:" + json.dumps(parent.get("parentRef"), sort_keys=True)
            self._stamp(key, created, where, parent.get("conditions", []))
        for listener in out.get("listeners", []):
            self._stamp(key, created, f"listener:{listener.get('name')}",
                        listener.get("conditions", []))

    def _stamp(self, key: ObjectKey, created: str, where: str,
               conditions: list[dict[str, Any]]) -> None:
        for condition in conditions:
            place = (key, created, where, condition["type"])
            seen = self._seen.get(place)
            if seen is None or seen[0] != condition["status"]:
                seen = self._seen[place] = (condition["status"], now_timestamp(self.clock()))
            condition["lastTransitionTime"] = seen[1]

    def forget_all_but(self, live: Container[ObjectKey]) -> None:
        """Drop what deleted objects left."""
        self._seen = {place: seen for place, seen in self._seen.items() if place[0] in live}
