"""What each management API call does, apart from gRPC (controlplane/api/server.py adapts).

Apply and Delete run one at a time in a replica: read the documents, plan against the
mirror's current state (off the event loop: a big mesh takes a while to check, and xDS
serving must not stall), commit to the store only if nothing was committed since (another
replica may have), and return once the mirror serves the result, so a Get right after shows
it. A Conflict is planned again against the newer mesh, a few times. Each apply that changes
something (or is a dry run, or --strict) is analyzed (controlplane.mesh.analyze) on the whole
mesh after the change; its findings about the applied objects come back as warnings.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from controlplane.api.apply import Outcome, Plan, plan_apply, plan_delete
from controlplane.api.documents import Source, read_keys, read_sources
from controlplane.api.kinds import canonical_kind
from controlplane.api.mirror import StoreMirror
from controlplane.api.objects import now_timestamp
from controlplane.mesh import MeshObject, ObjectKey, Problem
from controlplane.mesh.analyze import analyze
from controlplane.mesh.compile.compiler import MeshCompiler
from controlplane.mesh.errors import Location
from controlplane.store import Conflict, Record, Store, StoreError

INVALID, ABORTED, NOT_FOUND, UNAVAILABLE = ("INVALID_ARGUMENT", "ABORTED", "NOT_FOUND",
                                            "UNAVAILABLE")
ATTEMPTS = 3
WAIT = 10.0  # seconds an Apply waits for the mirror to serve what it committed


class ApiError(Exception):
    """A refused call: a gRPC status code name, a message and the problems behind it."""

    def __init__(self, code: str, message: str, problems: Iterable[Problem] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.problems = list(problems)


@dataclass
class Result:
    revision: int
    outcomes: list[Outcome] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


class MeshApi:
    def __init__(self, store: Store, mirror: StoreMirror,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.mirror = mirror
        self.clock = clock
        self._writing = asyncio.Lock()
        # analyze's compiler, kept from one apply to the next so that a small change reuses the
        # units of the rest (a thread uses it at a time: changes are serialised by _writing).
        self._analysis = MeshCompiler()

    async def apply(self, sources: list[Source], *, dry_run: bool = False,
                    strict: bool = False) -> Result:
        objects, problems = await asyncio.to_thread(read_sources, sources)
        if problems:
            raise ApiError(INVALID, _summary(problems), problems)
        now = now_timestamp(self.clock())

        def plan(state: Any) -> Plan:
            return plan_apply(state, objects, now=now, new_uid=lambda: str(uuid.uuid4()))
        return await self._change(plan, {obj.label for obj in objects}, dry_run, strict)

    async def delete(self, sources: list[Source], refs: list[ObjectKey], *,
                     ignore_not_found: bool = False, dry_run: bool = False) -> Result:
        keys, problems = await asyncio.to_thread(read_keys, sources)
        if problems:
            raise ApiError(INVALID, _summary(problems), problems)
        keys += [(key, Location()) for key in refs]

        def plan(state: Any) -> Plan:
            return plan_delete(state, keys, ignore_missing=ignore_not_found)
        return await self._change(plan, set(), dry_run, False)

    async def _change(self, make: Callable[[Any], Plan], labels: set[str], dry_run: bool,
                      strict: bool) -> Result:
        async with self._writing:
            for _ in range(ATTEMPTS):
                state = self.mirror.state
                plan = await asyncio.to_thread(make, state)
                if plan.errors:
                    raise ApiError(INVALID, _summary(plan.errors), plan.errors)
                if not (plan.changes or strict or dry_run):
                    # Nothing to write, nothing to refuse: skip analyze (seconds for a
                    # thousand Services), the objects were analyzed when they were applied.
                    return Result(state.revision, plan.outcomes, [])
                warnings = await asyncio.to_thread(_findings, plan, labels, self._analysis)
                if strict and any(item.severity == "error" for item in warnings):
                    errors = [item for item in warnings if item.severity == "error"]
                    raise ApiError(INVALID, _summary(errors), errors)
                if dry_run or not plan.changes:
                    return Result(state.revision, plan.outcomes, warnings)
                try:
                    revision = await self.store.commit(plan.base, plan.puts, plan.deletes)
                except Conflict:
                    await _bounded(self.mirror.wait_for(state.revision + 1), WAIT)
                    continue
                except StoreError as error:
                    raise ApiError(UNAVAILABLE, f"the store refused the change: {error}") \
                        from error
                await _bounded(self.mirror.wait_for(revision), WAIT)
                return Result(revision, plan.outcomes, warnings)
        raise ApiError(ABORTED, f"the mesh kept changing during {ATTEMPTS} attempts; "
                                "apply again")

    # ---- reading ----------------------------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str) -> tuple[Record, MeshObject | None]:
        key = ObjectKey(self.kind(kind), namespace or "default", name)
        record = self.mirror.state.records.get(key)
        if record is None:
            raise ApiError(NOT_FOUND, f"{key} not found")
        return record, self.mirror.state.objects.get(key)

    def list(self, kind: str = "", namespace: str = "") -> list[Record]:
        wanted = self.kind(kind) if kind else ""
        return [record for key, record in sorted(self.mirror.state.records.items())
                if (not wanted or key.kind == wanted)
                and (not namespace or key.namespace == namespace)]

    @staticmethod
    def kind(name: str) -> str:
        found = canonical_kind(name)
        if found is None:
            raise ApiError(INVALID, f"unknown kind {name!r}")
        return found


async def _bounded(waiting: Awaitable[None], seconds: float) -> None:
    """Wait at most `seconds` (the store may be slow to show a commit: answer anyway)."""
    try:
        async with asyncio.timeout(seconds):
            await waiting
    except TimeoutError:
        pass


def _findings(plan: Plan, labels: set[str], compiler: MeshCompiler) -> list[Problem]:
    """analyze's findings about the applied objects (run on the whole mesh after the change,
    so a reference to an object already stored resolves)."""
    if not labels:
        return []
    return [item for item in analyze(plan.objects.values(), compiler=compiler)
            if item.location.obj in labels]


def _summary(problems: list[Problem]) -> str:
    first = str(problems[0])
    more = len(problems) - 1
    return first + (f" (and {more} more)" if more else "")
