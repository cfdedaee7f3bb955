"""Apply and delete, decided as a whole before anything is written (sans-I/O).

`plan_apply(state, objects, ...)` merges the applied objects into the current mesh and checks
the result as a whole (`controlplane.mesh.validate`): one error and nothing is written, so the
last good mesh keeps serving. Otherwise the plan holds what to write (only objects that
changed), each object's outcome as kubectl prints it (created, configured, unchanged) and the
mesh after the change. `plan_delete` does the same for deletions. Errors name the file, line,
object and field (`Problem`), as the loader's do.

Concurrency is optimistic, as in Kubernetes: an applied object that names a
`metadata.resourceVersion` must still be at that version, and the whole plan is committed
only if the store is still at the revision it was planned on (controlplane/store Conflict).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from controlplane.api.objects import content, encode, stored_form
from controlplane.mesh import MeshError, MeshObject, ObjectKey, Problem, validate
from controlplane.mesh.errors import Location
from controlplane.mesh.objects import revision_of
from controlplane.store import Record

CREATED, CONFIGURED, UNCHANGED, DELETED = "created", "configured", "unchanged", "deleted"
MAX_MESH_OBJECTS = 20_000  # as many as one YAML stream may hold (controlplane.mesh.load)


@dataclass(frozen=True)
class State:
    """The mesh as the store has it at `revision`: records and their parsed objects."""

    revision: int = 0
    records: Mapping[ObjectKey, Record] = field(default_factory=dict)
    objects: Mapping[ObjectKey, MeshObject] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    key: ObjectKey
    action: str
    generation: int = 0


@dataclass
class Plan:
    base: int
    puts: dict[ObjectKey, bytes] = field(default_factory=dict)
    deletes: list[ObjectKey] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    objects: dict[ObjectKey, MeshObject] = field(default_factory=dict)  # the mesh after

    @property
    def changes(self) -> bool:
        return bool(self.puts or self.deletes)


def plan_apply(state: State, objects: Iterable[MeshObject], *, now: str,
               new_uid: Callable[[], str]) -> Plan:
    plan = Plan(state.revision, objects=dict(state.objects))
    seen: dict[ObjectKey, MeshObject] = {}
    for obj in objects:
        if obj.key in seen:
            plan.errors.append(Problem("error", "Duplicate", f"{obj.label} is given twice "
                                       f"(first at {seen[obj.key].location()})",
                                       obj.location()))
            continue
        seen[obj.key] = obj
        try:
            _apply_one(plan, state, obj, now, new_uid)
        except MeshError as error:
            plan.errors.append(Problem("error", "Invalid", error.message, error.location))
    _check_whole(plan)
    return plan


def _check_whole(plan: Plan) -> None:
    if plan.errors:
        return
    if len(plan.objects) > MAX_MESH_OBJECTS:
        plan.errors.append(Problem("error", "TooMany", f"the mesh would hold "
                                   f"{len(plan.objects)} objects (at most {MAX_MESH_OBJECTS})",
                                   Location()))
        return
    plan.errors += validate(plan.objects.values())


def _apply_one(plan: Plan, state: State, obj: MeshObject, now: str,
               new_uid: Callable[[], str]) -> None:
    record = state.records.get(obj.key)
    old = state.objects.get(obj.key)
    _check_resource_version(obj, record)
    if record is None or old is None:
        final = _finalised(obj, generation=1, created=now, uid=new_uid())
        plan.puts[obj.key] = encode(final[1])
        plan.objects[obj.key] = final[0]
        plan.outcomes.append(Outcome(obj.key, CREATED, 1))
        return
    old_data = old.raw
    generation = old.meta.generation
    if encode(content(stored_form(obj, generation=0, created="", uid=""))) != encode(
            content(old_data)):
        generation += 1
    metadata = old_data.get("metadata", {})
    final_obj, data = _finalised(obj, generation=generation,
                                 created=str(metadata.get("creationTimestamp") or now),
                                 uid=str(metadata.get("uid") or new_uid()))
    encoded = encode(data)
    if encoded == record.value:
        plan.outcomes.append(Outcome(obj.key, UNCHANGED, generation))
        return
    plan.puts[obj.key] = encoded
    plan.objects[obj.key] = final_obj
    plan.outcomes.append(Outcome(obj.key, CONFIGURED, generation))


def _check_resource_version(obj: MeshObject, record: Record | None) -> None:
    metadata = obj.raw.get("metadata")
    wanted = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
    if wanted is None or wanted == "":
        return
    where = obj.location(("metadata", "resourceVersion"))
    if record is None:
        raise MeshError("resourceVersion must not be set on an object to be created", where)
    if str(wanted) != str(record.revision):
        raise MeshError(f"Conflict: the object was modified (it is at resourceVersion "
                        f"{record.revision}, not {wanted}); get it again and re-apply", where)


def _finalised(obj: MeshObject, *, generation: int, created: str, uid: str
               ) -> tuple[MeshObject, dict[str, object]]:
    """The object as it will be stored, and as the mesh will see it (same generation and
    creationTimestamp, so precedence and observedGeneration match what `get` shows)."""
    data = stored_form(obj, generation=generation, created=created, uid=uid)
    meta = dataclasses.replace(obj.meta, generation=generation, creation_timestamp=created)
    revision = revision_of(obj.api_version, obj.kind, meta, {
        key: value for key, value in data.items() if key != "metadata"})
    return dataclasses.replace(obj, meta=meta, raw=data, revision=revision), data


def plan_delete(state: State, keys: Iterable[tuple[ObjectKey, Location]], *,
                ignore_missing: bool = False) -> Plan:
    plan = Plan(state.revision, objects=dict(state.objects))
    for key, where in keys:
        if key in plan.deletes:
            continue
        if key not in state.records:
            if not ignore_missing:
                plan.errors.append(Problem("error", "NotFound", f"{key} not found", where))
            continue
        plan.deletes.append(key)
        plan.objects.pop(key, None)
        plan.outcomes.append(Outcome(key, DELETED))
    _check_whole(plan)
    return plan
