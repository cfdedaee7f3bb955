"""`--workers N`: serving spread over N worker processes of one control plane.

The parent process loads and validates the configuration (the file source) into its cache, as
a single process does, and serves only the admin endpoint. Each worker is a replica: it starts
from the parent's cache state and replays every commit after it (controlplane/cache/
replication.py: resources travel as their serialised bytes, so nothing is validated or
serialised twice and versions are the same in every worker), and serves xDS on the same
`--listen` address with SO_REUSEPORT, so the kernel spreads the sidecars' connections over the
workers. The parent's /status and /metrics gather the workers' (node entries carry `worker`).

A worker that exits ends the control plane (exit 1, one line naming it): the supervisor
restarts it, and the sidecars reconnect. Etcd-backed replicas (the mesh API) would feed
`replication.apply` from their own watch instead of this pipe.

Messages over each worker's pipe (pickled tuples):
    parent -> worker: ("change", Change) | ("status", id) | ("metrics", id) | ("stop",)
    worker -> parent: ("serving", pid) | ("status", id, dict) | ("metrics", id, str)
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from controlplane.cache import ResourceCache, replication
from controlplane.cache.store import Committed

ASK_TIMEOUT = 10.0


class WorkerExited(Exception):
    """A worker process ended while the control plane was serving."""


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to serve: picklable, from the command line."""

    index: int
    listen: str
    tls_cert: str | None
    tls_key: str | None
    client_ca: str | None
    log_level: str
    push_budget: int
    debounce_after: float
    debounce_max: float
    partial_updates: bool
    native: bool = False  # --xds-transport: controlplane/transport/ instead of grpcio


class _Worker:
    def __init__(self, spec: WorkerSpec, process: Any, conn: Connection) -> None:
        self.spec = spec
        self.process = process
        self.conn = conn
        self.outbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.serving: asyncio.Future[int] = asyncio.get_running_loop().create_future()


class WorkerPool:
    """The parent's side: spawn the workers, feed them the cache, gather their status."""

    def __init__(self, specs: list[WorkerSpec], cache: ResourceCache) -> None:
        self.specs = specs
        self.cache = cache
        self.workers: list[_Worker] = []
        self.failed: asyncio.Future[WorkerExited] | None = None
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._cancel_listen: Callable[[], None] | None = None
        self._closing = False

    def __repr__(self) -> str:
        return f"WorkerPool({len(self.workers)} workers)"

    async def start(self) -> None:
        """Spawn every worker with the current cache state; returns once all serve."""
        loop = asyncio.get_running_loop()
        self.failed = loop.create_future()
        context = multiprocessing.get_context("spawn")
        state = ("change", replication.encode(self.cache.state()))
        for spec in self.specs:
            parent, child = context.Pipe()
            process = context.Process(target=worker_entry, args=(spec, child),
                                      name=f"controlplane-worker-{spec.index}", daemon=True)
            process.start()
            child.close()
            worker = _Worker(spec, process, parent)
            self.workers.append(worker)
            worker.outbox.put_nowait(state)
            loop.add_reader(parent.fileno(), self._readable, worker)
            loop.add_reader(process.sentinel, self._exited, worker)
            self._tasks.append(loop.create_task(self._send_loop(worker)))
        self._cancel_listen = self.cache.listen(self._broadcast)
        await asyncio.wait([asyncio.ensure_future(self._serving_or_failed(worker))
                            for worker in self.workers])
        if self.failed.done():
            raise self.failed.result()

    async def _serving_or_failed(self, worker: _Worker) -> None:
        assert self.failed is not None
        waits: list[asyncio.Future[Any]] = [worker.serving, self.failed]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)

    def _broadcast(self, committed: Committed) -> None:
        message = ("change", replication.encode(committed))
        for worker in self.workers:
            worker.outbox.put_nowait(message)

    async def _send_loop(self, worker: _Worker) -> None:
        """Messages to one worker, in order; written from a thread (a big state or a busy
        worker must not block the parent's loop)."""
        while True:
            message = await worker.outbox.get()
            try:
                await asyncio.to_thread(worker.conn.send, message)
            except (OSError, EOFError):
                return  # the worker is gone: _exited reports it

    def _readable(self, worker: _Worker) -> None:
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(worker.conn.fileno())
            return
        kind = message[0]
        if kind == "serving" and not worker.serving.done():
            worker.serving.set_result(message[1])
        elif kind in ("status", "metrics"):
            future = self._replies.pop(message[1], None)
            if future is not None and not future.done():
                future.set_result(message[2])

    def _exited(self, worker: _Worker) -> None:
        asyncio.get_running_loop().remove_reader(worker.process.sentinel)
        if self._closing or self.failed is None or self.failed.done():
            return
        code = worker.process.exitcode
        self.failed.set_result(WorkerExited(
            f"worker {worker.spec.index} (pid {worker.process.pid}) exited with status {code}"))

    async def ask(self, kind: str) -> list[Any]:
        """Every worker's answer to ("status" | "metrics"), within ASK_TIMEOUT."""
        loop = asyncio.get_running_loop()
        futures = []
        for worker in self.workers:
            request_id = next(self._ids)
            future: asyncio.Future[Any] = loop.create_future()
            self._replies[request_id] = future
            futures.append(future)
            worker.outbox.put_nowait((kind, request_id))
        try:
            async with asyncio.timeout(ASK_TIMEOUT):
                return list(await asyncio.gather(*futures))
        finally:
            for future in futures:
                future.cancel()

    async def close(self) -> None:
        self._closing = True
        if self._cancel_listen is not None:
            self._cancel_listen()
        loop = asyncio.get_running_loop()
        for worker in self.workers:
            worker.outbox.put_nowait(("stop",))
        for worker in self.workers:
            await asyncio.to_thread(worker.process.join, 5)  # it stops on ("stop",)
            if worker.process.is_alive():
                worker.process.kill()
                await asyncio.to_thread(worker.process.join, 5)
            for fd in (worker.conn.fileno(), worker.process.sentinel):
                try:
                    loop.remove_reader(fd)
                except (ValueError, OSError):
                    pass
            worker.conn.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


# ---- the worker process ---------------------------------------------------------------------

def worker_entry(spec: WorkerSpec, conn: Connection) -> None:
    """A worker's main (multiprocessing spawn target)."""
    from controlplane import logs

    # The parent says when to stop (a supervisor's SIGTERM to the whole process group reaches
    # it too), and a worker whose parent is gone stops at the end of its pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logs.configure(spec.log_level)
    try:
        asyncio.run(_serve(spec, conn))
    except (EOFError, OSError):
        pass  # the parent is gone


async def _serve(spec: WorkerSpec, conn: Connection) -> None:
    import grpc

    from controlplane import logs
    from controlplane.fanout import Pacer
    from controlplane.main import server_options, tune_garbage_collector
    from controlplane.observe import Observer
    from controlplane.server import DiscoveryServer
    from controlplane.transport.h2_server import H2Server

    cache = ResourceCache()
    observer = Observer(cache)
    message = await asyncio.to_thread(conn.recv)
    replication.apply(cache, message[1])
    tune_garbage_collector()
    pacer = Pacer(budget=spec.push_budget, debounce_after=spec.debounce_after,
                  debounce_max=spec.debounce_max)
    discovery = DiscoveryServer(cache, observer, pacer, partial_updates=spec.partial_updates)
    host, _, port = spec.listen.rpartition(":")
    native = H2Server(discovery.methods()) if spec.native else None
    server = None if native else grpc.aio.server(options=server_options(reuseport=True))
    if native is not None:
        await native.start(host.strip("[]"), int(port), reuse_port=True)
    else:
        assert server is not None
        server.add_generic_rpc_handlers(discovery.generic_handlers())
        target = f"[{host.strip('[]')}]:{port}" if ":" in host.strip("[]") else spec.listen
        if spec.tls_cert and spec.tls_key:
            from controlplane.main import read_credentials
            server.add_secure_port(target, read_credentials(spec.tls_cert, spec.tls_key,
                                                            spec.client_ca))
        else:
            server.add_insecure_port(target)
        await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            stop.set()  # the parent is gone
            return
        if message[0] == "change":
            replication.apply(cache, message[1])
        elif message[0] == "status":
            conn.send(("status", message[1], observer.status()))
        elif message[0] == "metrics":
            conn.send(("metrics", message[1], observer.metrics_text()))
        elif message[0] == "stop":
            stop.set()

    loop.add_reader(conn.fileno(), readable)
    conn.send(("serving", os.getpid()))
    logs.event("worker_serving", worker=spec.index, listen=spec.listen)
    try:
        await stop.wait()
    finally:
        loop.remove_reader(conn.fileno())
        if server is not None:
            await server.stop(grace=1.0)
        if native is not None:
            await native.close()


# ---- gathering the workers' views -----------------------------------------------------------

def merge_status(parent: dict[str, Any], workers: list[dict[str, Any]]) -> dict[str, Any]:
    nodes = []
    for index, status in enumerate(workers):
        for node in status["nodes"]:
            nodes.append({**node, "worker": index})
    return {**parent, "nodes": nodes}


def merge_metrics(texts: list[str]) -> str:
    """Prometheus text of several processes as one: samples with the same name and labels are
    added (counters, gauges of streams and histogram buckets all add up)."""
    order: list[str] = []
    values: dict[str, float] = {}
    for text in texts:
        for line in text.splitlines():
            if not line or line.startswith("#"):
                if line and line not in values and line not in order:
                    order.append(line)
                continue
            key, _, value = line.rpartition(" ")
            if key not in values:
                order.append(key)
                values[key] = 0.0
            values[key] += float(value)
    lines = [key if key.startswith("#") else f"{key} {_number(values[key])}" for key in order]
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:.6f}"
