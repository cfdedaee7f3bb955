"""A State built the way the mirror builds it, from records in a MemoryStore-like dict."""

from __future__ import annotations

import itertools
import textwrap

from controlplane.api.apply import Plan, State
from controlplane.api.objects import decode
from controlplane.mesh import MeshObject, load_objects
from controlplane.store import Record

NOW = "2026-12-01T10:00:00Z"
_uids = itertools.count(1)


def objects(text: str, source: str = "mesh.yaml") -> list[MeshObject]:
    return load_objects(textwrap.dedent(text), source)


def new_uid() -> str:
    return f"uid-{next(_uids)}"


def committed(state: State, plan: Plan) -> State:
    """The state after committing `plan` as revision state.revision + 1."""
    assert not plan.errors, plan.errors
    revision = state.revision + 1
    records = dict(state.records)
    for key, value in plan.puts.items():
        old = records.get(key)
        records[key] = Record(key, value, revision, old.created if old else revision)
    for key in plan.deletes:
        records.pop(key)
    return State(revision, records, {key: decode(record) for key, record in records.items()})
