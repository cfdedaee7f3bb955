"""`--concurrency N`: N worker processes, one event loop each (Envoy's workers; the GIL makes
processes the way to use more cores).

- Every worker binds each listener itself with SO_REUSEPORT, so the kernel spreads
  connections over them; each has its own cluster manager (and so its own health checks).
- The parent holds the single ADS subscription: its Server (serve_traffic=False) validates
  each update (ACK/NACK) and fans the accepted update out to every worker, which applies it
  the same way. A worker that starts late is sent the current config first.
- The parent serves the admin endpoint: /ready when every worker is ready; /stats merges the
  workers' stats (proxy.stats snapshot/merge; state gauges such as cluster membership are
  the same in every worker and are taken once); /clusters is worker 0's view with each host's
  activity summed over the workers.

Parent <-> worker messages are length-prefixed JSON over a socketpair.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import Any

from google.protobuf import any_pb2

from protos.errors import ConfigError
from protos.loader import pack_any
from protos.registry import CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION
from proxy.admin import AdminServer
from proxy.bootstrap import Bootstrap, load_bootstrap
from proxy.descriptors import raise_descriptor_limit
from proxy.listeners.manager import ListenerBindError, bind_listener_socket
from proxy.process import first_of, install_uvloop, tune_garbage_collector
from proxy.server import Server, ServerAdminSource
from proxy.stats import Stats
from proxy.tasks import TaskSet

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!I")
# Gauges describing shared state (identical in every worker): merged once, not summed.
_STATE_GAUGE_SUFFIXES = (
    ".membership_total", ".membership_healthy", ".membership_degraded", "_open",
    ".ejections_active", "total_listeners_active", "connected_state",
)
_REPLAY_ORDER = (CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION)
_RESTART_DELAY = 0.5
STARTUP_FAILED = 3  # a worker's exit status when its listeners cannot start


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return _HEADER.pack(len(body)) + body


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    try:
        header = await reader.readexactly(_HEADER.size)
        body = await reader.readexactly(_HEADER.unpack(header)[0])
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    result: dict[str, Any] = json.loads(body)
    return result


def update_message(type_url: str, version: str, resources: tuple[Any, ...]) -> dict[str, Any]:
    return {"op": "apply", "type_url": type_url, "version": version,
            "resources": [base64.b64encode(item.SerializeToString()).decode()
                          for item in resources]}


def merge_snapshots(snapshots: list[dict[str, Any]]) -> Stats:
    merged = Stats()
    for index, snapshot in enumerate(snapshots):
        if index > 0:
            snapshot = {**snapshot, "gauges": {
                name: value for name, value in snapshot.get("gauges", {}).items()
                if not name.endswith(_STATE_GAUGE_SUFFIXES)}}
        merged.merge(snapshot)
    return merged


def merge_cluster_views(views: list[dict[str, Any]]) -> dict[str, Any]:
    """/clusters over workers: the first worker's view (health is the same everywhere), with
    each host's activity and counters summed over all workers."""
    if not views:
        return {"cluster_statuses": []}
    merged: dict[str, Any] = json.loads(json.dumps(views[0]))
    hosts = {(cluster["name"], _host_key(host)): host
             for cluster in merged["cluster_statuses"] for host in cluster["host_statuses"]}
    for view in views[1:]:
        for cluster in view["cluster_statuses"]:
            for host in cluster["host_statuses"]:
                target = hosts.get((cluster["name"], _host_key(host)))
                if target is None:
                    continue
                for key in ("active_requests", "active_connections"):
                    target[key] = target.get(key, 0) + host.get(key, 0)
                for key, value in host.get("stats", {}).items():
                    target.setdefault("stats", {})[key] = target["stats"].get(key, 0) + value
    return merged


def _host_key(host: dict[str, Any]) -> tuple[str, int]:
    address = host["address"]["socket_address"]
    return address["address"], address["port_value"]


class WorkerHandle:
    def __init__(self, index: int) -> None:
        self.index = index
        self.ready = False
        self.process: asyncio.subprocess.Process | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0

    def __repr__(self) -> str:
        pid = self.process.pid if self.process else None
        return f"WorkerHandle({self.index}, pid={pid}, ready={self.ready})"

    def send(self, message: dict[str, Any]) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(encode(message))

    async def request(self, op: str) -> dict[str, Any]:
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[self._next_id] = future
        self.send({"op": op, "id": self._next_id})
        try:
            async with asyncio.timeout(5):
                return await future
        finally:
            self.replies.pop(self._next_id, None)

    def on_message(self, message: dict[str, Any]) -> None:
        if message["op"] == "ready":
            self.ready = True
        elif message["op"] == "reply":
            future = self.replies.get(message["id"])
            if future is not None and not future.done():
                future.set_result(message)


class WorkerPool:
    """The parent: workers, the ADS subscription, the merged admin view."""

    def __init__(self, config_path: Path, bootstrap: Bootstrap, count: int, *,
                 drain_timeout: float) -> None:
        self.config_path = config_path
        self.count = count
        self.drain_timeout = drain_timeout
        self.server = Server(bootstrap, serve_traffic=False)
        self.server.update_observers.append(self._fan_out)
        self.workers = [WorkerHandle(index) for index in range(count)]
        self._tasks = TaskSet("worker pool", on_error=self._task_failed)
        self._merged = Stats()
        self._closing = False
        self.fatal = asyncio.Event()  # the process must end: `failure` says why
        self.failure = ""

    def __repr__(self) -> str:
        return f"WorkerPool({self.workers})"

    async def start(self) -> None:
        """Validate the static config (the server builds every static listener: a
        ConfigError ends the start-up before any worker runs), then start the workers."""
        await self.server.start()
        for worker in self.workers:
            await self._spawn(worker)

    def _task_failed(self, name: str, error: BaseException) -> None:
        self._fail(f"{name}: internal error: {error!r}")

    def _fail(self, failure: str) -> None:
        if not self.fatal.is_set():
            self.failure = failure
            self.fatal.set()

    async def _spawn(self, worker: WorkerHandle) -> None:
        parent_end, child_end = socket.socketpair()
        try:
            worker.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "proxy.workers", "--fd", str(child_end.fileno()),
                "-c", str(self.config_path), "--drain-time-s", str(self.drain_timeout),
                "--log-level", logging.getLevelName(logging.getLogger().level),
                *(["--serve-quic"] if worker.index == 0 else []),  # see _worker
                pass_fds=(child_end.fileno(),))
        finally:
            child_end.close()
        reader, writer = await asyncio.open_connection(sock=parent_end)
        worker.writer = writer
        for message in self._replay():
            worker.send(message)
        self._tasks.spawn(self._read(worker, reader), f"worker {worker.index}")

    def _replay(self) -> list[dict[str, Any]]:
        """The current dynamic config, for a worker that starts after updates arrived."""
        state = self.server.state
        return [update_message(type_url, state.versions[type_url],
                               tuple(pack_any(item.message)
                                     for item in state.resources[type_url].values()))
                for type_url in _REPLAY_ORDER if type_url in state.versions]

    async def _read(self, worker: WorkerHandle, reader: asyncio.StreamReader) -> None:
        while (message := await read_message(reader)) is not None:
            worker.on_message(message)
        worker.ready = False
        if self._closing:
            return
        # A worker died: reap it and start a replacement, which gets the current config.
        assert worker.process is not None
        code = await worker.process.wait()
        if code == STARTUP_FAILED:  # the config cannot start (a port in use): give up
            self._fail(f"worker {worker.index} failed (its error is above)")
            return
        log.error("worker %d exited with %s; restarting it", worker.index, code)
        if worker.writer is not None:
            worker.writer.close()
        await asyncio.sleep(_RESTART_DELAY)
        await self._spawn(worker)

    def _fan_out(self, type_url: str, version: str, resources: tuple[Any, ...]) -> None:
        message = update_message(type_url, version, resources)
        for worker in self.workers:
            worker.send(message)

    async def close(self) -> None:
        self._closing = True
        await self.server.close()
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            if worker.process is not None:
                try:
                    async with asyncio.timeout(10):
                        await worker.process.wait()
                except TimeoutError:
                    worker.process.kill()
                    await worker.process.wait()
            if worker.writer is not None:
                worker.writer.close()
        await self._tasks.close()

    # -- proxy.admin.AdminSource ----------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return all(worker.ready for worker in self.workers)

    async def refresh(self) -> None:
        replies = await asyncio.gather(*(w.request("snapshot") for w in self.workers),
                                       return_exceptions=True)
        good = [reply for reply in replies if isinstance(reply, dict)]
        self._merged = merge_snapshots([self.server.stats.snapshot()]
                                       + [reply["stats"] for reply in good])
        self._clusters = merge_cluster_views([reply["clusters"] for reply in good])
        self._listeners = {name: (host, port) for name, (host, port)
                           in (good[0]["listeners"] if good else {}).items()}

    def config_dump(self) -> dict[str, Any]:
        return self.server.config_dump()

    def clusters_view(self) -> dict[str, Any]:
        return getattr(self, "_clusters", {"cluster_statuses": []})

    def stats_store(self) -> Stats:
        return self._merged

    def listener_addresses(self) -> dict[str, tuple[str, int]]:
        return getattr(self, "_listeners", {})


def run_workers(config_path: Path, bootstrap: Bootstrap, count: int, *,
                drain_timeout: float) -> int:
    for listener in bootstrap.listeners:
        # Each worker binds for itself: port 0 would give every worker another port, and
        # without SO_REUSEPORT the second worker could not bind.
        if listener.address[1] == 0 or not listener.enable_reuse_port:
            print(f"pointsman proxy: listener {listener.name!r}: port 0 or "
                  "enable_reuse_port false need --concurrency 1", file=sys.stderr)
            return 1
        _check_bindable(listener)
    return asyncio.run(_parent(config_path, bootstrap, count, drain_timeout))


def _check_bindable(listener: Any) -> None:
    """Bind (and close) the address the workers will share: one ListenerBindError from the
    parent for an address already in use, rather than one per worker."""
    try:
        bind_listener_socket(listener, reuse_port=True).close()
    except OSError as error:
        raise ListenerBindError(listener.name, listener.address, error) from error


async def _parent(config_path: Path, bootstrap: Bootstrap, count: int,
                  drain_timeout: float) -> int:
    pool = WorkerPool(config_path, bootstrap, count, drain_timeout=drain_timeout)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    admin = None
    try:
        if bootstrap.admin_address is not None:
            admin = AdminServer(pool, bootstrap.admin_address)
            await admin.start()
        await pool.start()
        if await first_of(stop, pool.fatal, pool.server.failed) is not stop:
            print(f"pointsman proxy: {pool.failure or pool.server.failure}", file=sys.stderr)
            return 1
    finally:
        if admin is not None:
            await admin.close()
        await pool.close()
    return 0


# -- the worker process ---------------------------------------------------------------------------


async def _worker(fd: int, config_path: Path, drain_timeout: float,
                  serve_quic: bool = True) -> int:
    """One worker. QUIC listeners are served by worker 0 alone (`serve_quic`): with
    SO_REUSEPORT the kernel picks a UDP socket by hashing the datagram's addresses, so a
    client whose address changes (NAT rebinding, migration: RFC 9000 9) would land on a
    worker that does not know its connection ID, and a restarted worker reshuffles every
    client. Envoy routes by connection ID with BPF for that; one QUIC worker is always
    right (docs/http3.md)."""
    bootstrap = load_bootstrap(config_path)
    server = Server(bootstrap, reuse_port=True, drain_timeout=drain_timeout,
                    serve_quic=serve_quic)
    source = ServerAdminSource(server)
    reader, writer = await asyncio.open_connection(sock=socket.socket(fileno=fd))
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    try:
        await server.start(xds=False)
        tune_garbage_collector()
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_announce_ready(server, writer)),
                     group.create_task(_serve_parent(server, source, reader, writer)),
                     group.create_task(stop.wait()),
                     group.create_task(server.failed.wait())]
            # Until the parent goes away (EOF), asks us to stop (SIGTERM), or the server failed.
            await asyncio.wait(tasks[1:], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
    except (ConfigError, OSError) as error:  # a static listener that cannot start
        server.failure = str(error)
        server.failed.set()
    finally:
        writer.close()
        await server.close()
    if server.failed.is_set():
        print(f"pointsman proxy worker: {server.failure}", file=sys.stderr)
        return STARTUP_FAILED
    return 0


async def _announce_ready(server: Server, writer: asyncio.StreamWriter) -> None:
    await server.wait_ready()
    writer.write(encode({"op": "ready"}))


async def _serve_parent(server: Server, source: ServerAdminSource,
                        reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while (message := await read_message(reader)) is not None:
        if message["op"] == "apply":
            resources = tuple(any_pb2.Any.FromString(base64.b64decode(item))
                              for item in message["resources"])
            try:
                server.apply(message["type_url"], message["version"], resources)
            except ConfigError as error:  # the parent validated it; a bind error, say
                log.error("worker %d could not apply %s: %s", os.getpid(),
                          message["type_url"], error)
        elif message["op"] == "snapshot":
            writer.write(encode({
                "op": "reply", "id": message["id"], "stats": server.stats.snapshot(),
                "clusters": source.clusters_view(),
                "listeners": source.listener_addresses(),
            }))


def worker_main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="pointsman proxy worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("-c", type=Path, required=True)
    parser.add_argument("--drain-time-s", type=float, required=True)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--serve-quic", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="[%(asctime)s][worker %(process)d][%(levelname)s] %(message)s")
    raise_descriptor_limit()
    install_uvloop()
    return asyncio.run(_worker(args.fd, args.c, args.drain_time_s, args.serve_quic))


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
