"""The load generator's worker process: many simulated sidecars on one event loop (a script
helper, not a test). The driver (tests/bench/controlplane_scale.py) talks to it over a pipe:

    driver -> worker: ("start", wall_time)      all sidecars open their streams at that time
    worker -> driver: ("converged", Report)     every sidecar holds every type (or timed out)
    driver -> worker: "arm"                     remember each sidecar's EDS version
    worker -> driver: ("armed", None)
    worker -> driver: ("changed", Report)       every sidecar received a new EDS version
    driver -> worker: "stop"
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from tests.bench.xds.sidecars import DeltaSidecar, SotwSidecar


@dataclass
class Report:
    """Per-sidecar times (wall clock, 0.0 when it did not happen) and what went wrong."""

    times: list[float]
    failures: Counter[str] = field(default_factory=Counter)
    held: Counter[tuple[tuple[str, int], ...]] = field(default_factory=Counter)
    bytes_received: int = 0
    cpu_seconds: float = 0.0


@dataclass(frozen=True)
class WorkerSpec:
    target: str
    first: int  # index of its first sidecar
    count: int
    node_clusters: tuple[str, ...]  # per sidecar
    node_metadata: tuple[dict[str, str], ...]  # per sidecar ({} for none)
    delta: bool
    timeout: float
    native_client: bool = False  # tests/bench/xds/h2client.py instead of grpcio


async def _wait(event: asyncio.Event, done: Callable[[], bool], deadline: float) -> None:
    while not done():
        event.clear()
        remaining = deadline - time.time()
        if remaining <= 0:
            return
        try:
            await asyncio.wait_for(event.wait(), min(remaining, 1.0))
        except TimeoutError:
            pass


async def worker_main(spec: WorkerSpec, pipe: Connection) -> None:
    event = asyncio.Event()
    kind = DeltaSidecar if spec.delta else SotwSidecar
    sidecars = [kind(f"sidecar-{spec.first + offset}", spec.node_clusters[offset], event.set,
                     spec.node_metadata[offset])
                for offset in range(spec.count)]
    loop = asyncio.get_running_loop()
    pipe.send(("ready", None))
    _command, start_at = await loop.run_in_executor(None, pipe.recv)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    cpu_at_start = time.process_time()
    target = spec.target
    async with asyncio.TaskGroup() as tasks:
        runners = [tasks.create_task(sidecar.run(target, native=spec.native_client))
                   for sidecar in sidecars]
        await _wait(event, lambda: all(item.record.converged_at for item in sidecars),
                    start_at + spec.timeout)
        pipe.send(("converged", _report(sidecars, [item.record.converged_at
                                                   for item in sidecars], cpu_at_start)))
        while await loop.run_in_executor(None, pipe.recv) == "arm":
            baselines = [item.record.eds_version for item in sidecars]
            pipe.send(("armed", None))
            await _wait(event, lambda b=baselines: all(  # type: ignore[misc]
                item.record.eds_version != base for item, base in zip(sidecars, b, strict=True)),
                time.time() + spec.timeout)
            pipe.send(("changed", _report(sidecars, [
                item.record.eds_updated_at if item.record.eds_version != base else 0.0
                for item, base in zip(sidecars, baselines, strict=True)], cpu_at_start)))
        for runner in runners:
            runner.cancel()


def _report(sidecars: list[SotwSidecar], times: list[float], cpu_at_start: float) -> Report:
    report = Report(times, cpu_seconds=time.process_time() - cpu_at_start)
    for sidecar in sidecars:
        report.failures.update(sidecar.record.failures)
        report.held[tuple(sorted(sidecar.record.held.items()))] += 1
        report.bytes_received += sidecar.record.bytes_received
    return report


def worker_entry(spec: WorkerSpec, pipe: Connection) -> None:
    try:
        if spec.native_client:  # grpcio needs asyncio's own loop; the native client does not
            import uvloop
            uvloop.run(worker_main(spec, pipe))
        else:
            asyncio.run(worker_main(spec, pipe))
    except BaseExceptionGroup as group:  # the cancelled sidecars at stop
        if not all(isinstance(error, asyncio.CancelledError) for error in group.exceptions):
            raise
    except KeyboardInterrupt:
        pass
