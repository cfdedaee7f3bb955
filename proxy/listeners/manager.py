"""Listeners at run time: bind, accept, run listener filters, pick a chain, hand over; live
add / update / remove with draining (Envoy doc: intro/arch_overview/operations/draining).

An update swaps the listener's config: new connections use the new generation at once, while
connections accepted under the old one keep running and are closed after `drain_timeout`
(Envoy's --drain-time-s) if still open. A removed listener stops accepting and drains the same
way. Every connection is a task owned by its generation; every socket closes in `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from dataclasses import dataclass, field
from typing import Any

from proxy.context import ServerContext
from proxy.listeners.filters import ListenerFilterRejected, run_listener_filters
from proxy.listeners.matching import ConnectionFacts, select_filter_chain
from proxy.model.listener import FilterChain, Listener
from proxy.network.base import DownstreamConnection, NetworkFilter
from proxy.stats import Stats

log = logging.getLogger(__name__)

DEFAULT_DRAIN_TIMEOUT = 600.0  # Envoy's --drain-time-s default
_RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_MAX_ACCEPT_BACKOFF = 1.0
_ACCEPT_BATCH = 64


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ListenerBindError(OSError):
    """A listener's address could not be bound; nothing of the update was applied."""

    def __init__(self, listener: str, address: tuple[str, int], error: OSError) -> None:
        super().__init__(error.errno, error.strerror)
        self.listener = listener
        self.address = address


class ListenerStats:
    """Envoy's per-listener stats (`listener.<address or stat_prefix>.`)."""

    def __init__(self, stats: Stats, listener: Listener) -> None:
        scope = f"listener.{listener.stats_name}."
        self.cx_total = stats.counter(scope + "downstream_cx_total")
        self.cx_active = stats.gauge(scope + "downstream_cx_active")
        self.cx_destroy = stats.counter(scope + "downstream_cx_destroy")
        self.no_chain = stats.counter(scope + "no_filter_chain_match")
        self.pre_cx_timeout = stats.counter(scope + "downstream_pre_cx_timeout")
        self.filter_errors = stats.counter(scope + "downstream_listener_filter_error")


@dataclass(eq=False)
class _Generation:
    """One version of a listener's config, its stats and the connections accepted under it
    (which keep counting in this generation's stats even after an update renames them)."""

    listener: Listener
    filters: dict[int, NetworkFilter]  # id(chain) -> the chain's filter instance
    stats: ListenerStats
    connections: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    def build(cls, listener: Listener, context: ServerContext) -> _Generation:
        chains: list[FilterChain] = list(listener.filter_chains)
        if listener.default_filter_chain is not None:
            chains.append(listener.default_filter_chain)
        return cls(listener, {
            id(chain): chain.filter.factory.create(chain.filter.config, context)
            for chain in chains
        }, ListenerStats(context.stats, listener))


class ActiveListener:
    """One bound listening socket and its accept loop."""

    def __init__(self, listener: Listener, context: ServerContext, *, reuse_port: bool,
                 drain_timeout: float) -> None:
        self.context = context
        self.reuse_port = reuse_port
        self.drain_timeout = drain_timeout
        self.current = _Generation.build(listener, context)
        self.draining: set[asyncio.Task[None]] = set()
        self.sock: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._next_id = 0

    def __repr__(self) -> str:
        return (f"ActiveListener({self.current.listener.name} {self.address}, "
                f"active={len(self.current.connections)}, draining={len(self.draining)})")

    @property
    def address(self) -> tuple[str, int]:
        if self.sock is not None:
            host, port = self.sock.getsockname()[:2]
            return host, port
        return self.current.listener.address

    def bind(self) -> None:
        host, port = self.current.listener.address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Listener.enable_reuse_port (default true, as in Envoy); workers always need it.
            if self.reuse_port or self.current.listener.enable_reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(self.current.listener.backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def start(self) -> None:
        if self.sock is None:
            self.bind()
        self._accept_task = asyncio.get_running_loop().create_task(
            self._accept_loop(), name=f"accept {self.current.listener.name}")

    def update(self, listener: Listener) -> None:
        """New connections use `listener` now; the old generation drains."""
        old = self.current
        self.current = _Generation.build(listener, self.context)
        self._drain(old)

    async def stop(self) -> None:
        """Stop accepting, then drain every connection (bounded by drain_timeout)."""
        if self._accept_task is not None:
            self._accept_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accept_task
        if self.sock is not None:
            self.sock.close()
        self._drain(self.current)
        if self.draining:
            await asyncio.gather(*self.draining, return_exceptions=True)

    async def close_now(self) -> None:
        """Shut down without draining (process exit)."""
        self.drain_timeout = 0
        await self.stop()

    def _drain(self, generation: _Generation) -> None:
        for network_filter in generation.filters.values():
            start_draining = getattr(network_filter, "start_draining", None)
            if start_draining is not None:  # proxy.network.base.DrainableNetworkFilter
                start_draining()
        if not generation.connections:
            return
        task = asyncio.get_running_loop().create_task(self._drain_generation(generation))
        self.draining.add(task)
        task.add_done_callback(self.draining.discard)

    async def _drain_generation(self, generation: _Generation) -> None:
        pending = set(generation.connections)
        if self.drain_timeout > 0:
            _done, pending = await asyncio.wait(pending, timeout=self.drain_timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _accept_loop(self) -> None:
        """Accept in batches on readiness (no future per connection); on EMFILE and other
        resource errors stop reading and retry after a growing pause instead of spinning."""
        assert self.sock is not None
        loop = asyncio.get_running_loop()
        backoff = 0.01
        fd = self.sock.fileno()
        while True:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, _wake, ready)
            try:
                await ready
            finally:
                loop.remove_reader(fd)
            error = self._accept_batch()
            if error is None:
                backoff = 0.01
                continue
            log.warning("accept on %s: %s; retrying in %.2fs",
                        self.current.listener.name, error.strerror, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_ACCEPT_BACKOFF)

    def _accept_batch(self) -> OSError | None:
        """Accept what is queued (up to a bound); the resource error that stopped it."""
        assert self.sock is not None
        for _ in range(_ACCEPT_BATCH):
            try:
                client, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return None
            except OSError as error:
                if error.errno in _RESOURCE_ERRORS:
                    return error
                log.warning("accept on %s: %s", self.current.listener.name, error)
                return None
            self._spawn(client, peer)
        return None

    def _spawn(self, client: socket.socket, peer: Any) -> None:
        generation = self.current
        self._next_id += 1
        generation.stats.cx_total.inc()
        generation.stats.cx_active.inc()
        task = asyncio.get_running_loop().create_task(
            self._serve(generation, client, (peer[0], peer[1]), self._next_id))
        generation.connections.add(task)
        task.add_done_callback(generation.connections.discard)
        # _serve closes the socket in its `finally`, but a task cancelled before its first
        # step (the listener closing right after an accept) never enters that `try`.
        task.add_done_callback(lambda _: client.close())

    async def _serve(self, generation: _Generation, client: socket.socket,
                     peer: tuple[str, int], connection_id: int) -> None:
        listener = generation.listener
        try:
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            local = client.getsockname()
            accepted = ConnectionFacts(destination=(local[0], local[1]), source=peer)
            facts = await self._listener_filters(client, generation, accepted)
            if facts is None:
                return
            chain = select_filter_chain(listener, facts)
            if chain is None:
                generation.stats.no_chain.inc()
                return
            connection = DownstreamConnection(
                sock=client, remote_address=facts.source, local_address=facts.destination,
                listener_name=listener.name, connection_id=connection_id,
                server_name=facts.server_name,
                application_protocols=facts.application_protocols,
                transport_protocol=facts.transport_protocol,
                server_ssl=chain.tls.ssl_context if chain.tls else None,
                buffer_limit=listener.per_connection_buffer_limit_bytes,
            )
            await generation.filters[id(chain)].on_new_connection(connection)
        except OSError as error:
            log.debug("connection %d on %s: %s", connection_id, listener.name, error)
        except Exception:
            log.exception("connection %d on %s failed", connection_id, listener.name)
        finally:
            client.close()
            generation.stats.cx_active.dec()
            generation.stats.cx_destroy.inc()

    async def _listener_filters(self, client: socket.socket, generation: _Generation,
                                facts: ConnectionFacts) -> ConnectionFacts | None:
        listener = generation.listener
        if not listener.listener_filters:
            return facts
        try:
            async with asyncio.timeout(listener.listener_filters_timeout):
                return await run_listener_filters(client, listener, facts)
        except TimeoutError:
            generation.stats.pre_cx_timeout.inc()
            return facts if listener.continue_on_listener_filters_timeout else None
        except ListenerFilterRejected as error:
            generation.stats.filter_errors.inc()
            log.debug("listener %s: %s", listener.name, error)
            return None


class ListenerManager:
    """The set of active listeners, reconciled with each new set of listener models."""

    def __init__(self, context: ServerContext, *, reuse_port: bool = False,
                 drain_timeout: float = DEFAULT_DRAIN_TIMEOUT) -> None:
        self.context = context
        self.reuse_port = reuse_port
        self.drain_timeout = drain_timeout
        self.active: dict[str, ActiveListener] = {}
        self.models: dict[str, Listener] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        stats = context.stats
        self.added = stats.counter("listener_manager.listener_added")
        self.modified = stats.counter("listener_manager.listener_modified")
        self.removed = stats.counter("listener_manager.listener_removed")
        self.total_active = stats.gauge("listener_manager.total_listeners_active")

    def __repr__(self) -> str:
        return f"ListenerManager({sorted(self.active)})"

    def apply(self, listeners: dict[str, Listener]) -> None:
        """Reconcile with `listeners` (name -> model): add, update in place, or remove.

        New addresses are bound first, so a bind failure (OSError) changes nothing and the
        last good config stays (the xDS client NACKs it)."""
        starting: list[ActiveListener] = []
        try:
            for name, model in listeners.items():
                current = self.active.get(name)
                if current is not None and current.current.listener.address == model.address:
                    continue
                new = ActiveListener(model, self.context, reuse_port=self.reuse_port,
                                     drain_timeout=self.drain_timeout)
                try:
                    new.bind()  # fails before any change is made
                except OSError as error:
                    raise ListenerBindError(name, model.address, error) from error
                starting.append(new)
        except BaseException:
            for new in starting:
                if new.sock is not None:
                    new.sock.close()
            raise
        replaced = {new.current.listener.name: new for new in starting}
        for name, model in listeners.items():
            if name in replaced:
                if name in self.active:
                    self.modified.inc()
                    self._stop_later(self.active[name])
                else:
                    self.added.inc()
                self.active[name] = replaced[name]
                replaced[name].start()
            elif self.models.get(name) != model:
                self.modified.inc()
                self.active[name].update(model)
        for name in set(self.active) - set(listeners):
            self.removed.inc()
            self._stop_later(self.active.pop(name))
        self.models = dict(listeners)
        self.total_active.set(len(self.active))

    def _stop_later(self, listener: ActiveListener) -> None:
        task = asyncio.get_running_loop().create_task(listener.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def addresses(self) -> dict[str, tuple[str, int]]:
        return {name: active.address for name, active in self.active.items()}

    async def close(self) -> None:
        for active in list(self.active.values()):
            await active.close_now()
        self.active.clear()
        for task in list(self._stopping):
            task.cancel()
        await asyncio.gather(*self._stopping, return_exceptions=True)
