"""Listeners at run time: bind, accept, run listener filters, pick a chain, hand over; live
add / update / remove with draining (Envoy doc: intro/arch_overview/operations/draining).

An update is applied in two steps, so that a rejected one changes nothing. `stage()` builds
every new or changed listener of the whole set (each filter chain's network filter is created:
that is where errors such as an inline route naming an unknown cluster are found) and binds
the sockets of new addresses; any error closes what it opened and leaves everything as it
was. `activate()` then swaps them in, which cannot fail for config reasons: new connections
use the new generation at once, while connections accepted under the old one keep running and
are closed after `drain_timeout` (Envoy's --drain-time-s) if still open. A listener staged but
not activated is warming (Envoy's listener warming: it waits for its RDS route tables); a
removed listener stops accepting and drains the same way. A staged socket is bound but does not
listen() until it is activated (Envoy binds at listener creation and listens when the workers
start it), so a warming port refuses connections.

Every connection is a task owned by its generation; every socket closes in `finally`. At the
descriptor limit a listener refuses new connections cleanly (proxy.descriptors).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protos.errors import ConfigError
from proxy.context import ServerContext
from proxy.descriptors import RESOURCE_ERRORS, SpareDescriptor, listener_spare
from proxy.listeners.filters import ListenerFilterRejected, run_listener_filters
from proxy.listeners.matching import ConnectionFacts, select_filter_chain
from proxy.listeners.quic import QuicActiveListener
from proxy.listeners.shared import bind_socket, bound_address, finish_connections
from proxy.listeners.udp import ActiveUdpListener, UdpGeneration, bind_udp_socket
from proxy.model.listener import FilterChain, Listener
from proxy.network.base import (
    READ_FILTERS,
    DownstreamConnection,
    NetworkFilter,
    NetworkFilterFactory,
    ReadFilter,
    factory_for,
)
from proxy.network.no_filters import NO_FILTERS
from proxy.stats import Stats
from proxy.tasks import TaskSet, log_failure

log = logging.getLogger(__name__)

DEFAULT_DRAIN_TIMEOUT = 600.0  # Envoy's --drain-time-s default
_MAX_ACCEPT_BACKOFF = 1.0
_ACCEPT_BATCH = 64


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ListenerBindError(OSError):
    """A listener's address could not be bound (or listened on)."""

    def __init__(self, listener: str, address: tuple[str, int], error: OSError) -> None:
        super().__init__(error.errno, error.strerror)
        self.listener = listener
        self.address = address

    def __str__(self) -> str:
        return (f"listener {self.listener!r} address {self.address[0]}:{self.address[1]}: "
                f"cannot listen: {self.strerror}")


def bind_listener_socket(listener: Listener, *, reuse_port: bool) -> socket.socket:
    """A non-blocking socket bound to the listener's address, not yet listening (a UDP
    listener's or a QUIC listener's datagram socket: proxy.listeners.udp, .quic)."""
    if listener.is_udp or listener.quic is not None:
        return bind_udp_socket(listener, reuse_port=reuse_port)
    return bind_socket(listener, socket.SOCK_STREAM, reuse_port=reuse_port)


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
        self.global_cx_overflow = stats.counter(scope + "downstream_global_cx_overflow")


@dataclass(eq=False)
class _Generation:
    """One version of a listener's config, its stats and the connections accepted under it
    (which keep counting in this generation's stats even after an update renames them)."""

    listener: Listener
    filters: dict[int, NetworkFilter]  # id(chain) -> the chain's filter instance
    stats: ListenerStats
    connections: set[asyncio.Task[None]] = field(default_factory=set)
    # id(chain) -> what makes each connection's read filters (network rbac), in chain order.
    read_makers: dict[int, tuple[Callable[[], ReadFilter], ...]] = field(default_factory=dict)

    def read_filters(self, chain: FilterChain) -> tuple[ReadFilter, ...]:
        return tuple(make() for make in self.read_makers.get(id(chain), ()))

    @classmethod
    def build(cls, listener: Listener, context: ServerContext) -> _Generation:
        """Create each chain's network filter; a ConfigError names the listener and the chain."""
        chains: list[tuple[str, FilterChain]] = [
            (f"filter_chains[{index}]", chain)
            for index, chain in enumerate(listener.filter_chains)]
        if listener.default_filter_chain is not None:
            chains.append(("default_filter_chain", listener.default_filter_chain))
        filters: dict[int, NetworkFilter] = {}
        read_makers: dict[int, tuple[Callable[[], ReadFilter], ...]] = {}
        for where, chain in chains:
            last = len(chain.read_filters)
            try:
                filters[id(chain)] = _factory(chain).create(chain.filter.config, context)
            except ConfigError as error:
                raise error.within(field=f"{where}.filters[{last}].typed_config",
                                   resource=listener.name) from error
            if chain.read_filters:
                read_makers[id(chain)] = tuple(
                    READ_FILTERS[item.config_type].create(item.config, context)
                    for item in chain.read_filters)
        for _where, chain in chains:
            if chain.tls is not None and chain.tls.binding is not None:
                chain.tls.binding.count_into(context.stats,
                                             f"listener.{listener.stats_name}.ssl.")
        return cls(listener, filters, ListenerStats(context.stats, listener),
                   read_makers=read_makers)


def _build_generation(listener: Listener, context: ServerContext
                      ) -> _Generation | UdpGeneration:
    """A TCP listener's chains and their filters, or a UDP listener's udp_proxy."""
    if listener.is_udp:
        return UdpGeneration.build(listener, context)
    return _Generation.build(listener, context)


def _kind(listener: Listener) -> str:
    """TCP, UDP or QUIC: a listener changing kind on one address gets a new socket."""
    return "quic" if listener.quic is not None else "udp" if listener.is_udp else "tcp"


def _factory(chain: FilterChain) -> NetworkFilterFactory:
    """The chain's network filter factory; a chain without filters closes its connections
    (proxy.network.no_filters)."""
    if not chain.filter.config_type:
        return NO_FILTERS
    return factory_for(chain.filter.config_type, chain.filter.name)


@dataclass(eq=False)
class _Staged:
    """A listener built by `ListenerManager.stage()`, not yet serving: its generation, and its
    bound socket when it is new or moved to another address (None: it replaces the
    generation of the listener serving on the same address)."""

    generation: _Generation | UdpGeneration
    sock: socket.socket | None

    @property
    def model(self) -> Listener:
        return self.generation.listener

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


class ActiveListener:
    """One bound listening socket and its accept loop."""

    def __init__(self, listener: Listener, context: ServerContext, *, reuse_port: bool,
                 drain_timeout: float, generation: _Generation | None = None,
                 sock: socket.socket | None = None, spare: SpareDescriptor | None = None
                 ) -> None:
        self.context = context
        self.reuse_port = reuse_port
        self.drain_timeout = drain_timeout
        self.current = generation or _Generation.build(listener, context)
        self.draining = TaskSet(f"listener {listener.name} drain")
        self.sock = sock
        self.spare = spare or listener_spare()
        self._accept_task: asyncio.Task[None] | None = None
        self._next_id = 0
        self._refusing = False

    def __repr__(self) -> str:
        return (f"ActiveListener({self.current.listener.name} {self.address}, "
                f"active={len(self.current.connections)}, draining={len(self.draining)})")

    @property
    def address(self) -> tuple[str, int]:
        return bound_address(self.sock, self.current.listener.address)

    def bind(self) -> None:
        self.sock = bind_listener_socket(self.current.listener, reuse_port=self.reuse_port)

    def start(self) -> None:
        """listen() and accept; OSError (the address was taken since it was bound) changes
        nothing."""
        if self.sock is None:
            self.bind()
        assert self.sock is not None
        self.sock.listen(self.current.listener.backlog)
        self._accept_task = asyncio.get_running_loop().create_task(
            self._accept_loop(), name=f"accept {self.current.listener.name}")
        self._accept_task.add_done_callback(log_failure)

    def update(self, listener: Listener) -> None:
        """New connections use `listener` now; the old generation drains."""
        self.swap(_Generation.build(listener, self.context))

    def swap(self, generation: _Generation) -> None:
        old = self.current
        self.current = generation
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
        pending = list(self.draining)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def close_now(self) -> None:
        """Shut down without draining (process exit)."""
        self.drain_timeout = 0
        await self.stop()

    def _drain(self, generation: _Generation) -> None:
        for network_filter in generation.filters.values():
            start_draining = getattr(network_filter, "start_draining", None)
            if start_draining is not None:  # proxy.network.base.DrainableNetworkFilter
                start_draining()
        if generation.connections:
            self.draining.spawn(self._drain_generation(generation),
                                generation.listener.stats_name)

    async def _drain_generation(self, generation: _Generation) -> None:
        await finish_connections(generation.connections, self.drain_timeout)

    async def _accept_loop(self) -> None:
        """Accept in batches on readiness (no future per connection). Out of descriptors, the
        waiting connections are refused cleanly with the spare descriptor; on other resource
        errors (or no spare) stop reading and retry after a growing pause instead of spinning."""
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
                if error.errno not in RESOURCE_ERRORS:
                    log.warning("accept on %s: %s", self.current.listener.name, error)
                    return None
                if not self._refuse_waiting(error):
                    return error
                continue
            self._refusing = False
            self._spawn(client, peer)
        return None

    def _refuse_waiting(self, error: OSError) -> bool:
        """Out of descriptors: accept the connections waiting with the spare descriptor and
        close them at once (proxy.descriptors). Linux reports EMFILE before it looks at the
        backlog, so there may be none waiting. False when the spare did not help (none, or
        the freed descriptor was taken first): the caller backs off instead of spinning."""
        assert self.sock is not None
        if not self.spare.release():
            return False
        refused = 0
        helped = True
        try:
            while refused < _ACCEPT_BATCH:
                try:
                    client, _peer = self.sock.accept()
                except (BlockingIOError, InterruptedError):
                    break  # nothing (more) waiting
                except OSError:
                    helped = refused > 0
                    break
                client.close()
                refused += 1
        finally:
            self.spare.restore()
        self.current.stats.global_cx_overflow.inc(refused)
        if refused and not self._refusing:
            log.warning("listener %s: %s; refusing new connections until descriptors free up",
                        self.current.listener.name, error.strerror)
        self._refusing = self._refusing or refused > 0
        return helped

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
                read_filters=generation.read_filters(chain),
                direct_remote_address=peer,
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
    """The listeners serving now (`active`, `models`) and the whole set last staged."""

    def __init__(self, context: ServerContext, *, reuse_port: bool = False,
                 drain_timeout: float = DEFAULT_DRAIN_TIMEOUT, bind: bool = True,
                 serve_quic: bool = True) -> None:
        """`bind=False` (the --concurrency parent) builds listeners to validate them but
        never binds or serves them; `serve_quic=False` (--concurrency workers but the first,
        proxy.workers) does so for QUIC listeners only."""
        self.context = context
        self.reuse_port = reuse_port
        self.drain_timeout = drain_timeout
        self.bind = bind
        self.serve_quic = serve_quic
        self.active: dict[str, ActiveListener | ActiveUdpListener | QuicActiveListener] = {}
        self.models: dict[str, Listener] = {}
        self.staged: dict[str, Listener] = {}  # the whole set of the last stage()
        self._warming: dict[str, _Staged] = {}  # staged listeners built but not serving yet
        self._stopping = TaskSet("listener manager")
        stats = context.stats
        self.added = stats.counter("listener_manager.listener_added")
        self.modified = stats.counter("listener_manager.listener_modified")
        self.removed = stats.counter("listener_manager.listener_removed")
        self.create_failure = stats.counter("listener_manager.listener_create_failure")
        self.total_active = stats.gauge("listener_manager.total_listeners_active")
        self.total_warming = stats.gauge("listener_manager.total_listeners_warming")

    def __repr__(self) -> str:
        return f"ListenerManager(active={sorted(self.active)}, warming={sorted(self._warming)})"

    def apply(self, listeners: dict[str, Listener]) -> None:
        """Stage `listeners` and serve all of them now."""
        self.stage(listeners)
        failures = self.activate()
        if failures:
            raise failures[0]

    def stage(self, listeners: dict[str, Listener]) -> None:
        """Build every listener of `listeners` that is new or changed (and bind the sockets
        of new addresses). All or nothing: a ConfigError (naming the listener and the field)
        or ListenerBindError closes what this call opened and changes nothing."""
        built: dict[str, _Staged] = {}
        try:
            for name, model in listeners.items():
                staged = self._build(name, model)
                if staged is not None:
                    built[name] = staged
        except BaseException:
            for name, staged in built.items():
                if self._warming.get(name) is not staged:
                    staged.close()
            raise
        for name, staged in self._warming.items():
            if built.get(name) is not staged:
                staged.close()
        self._warming = built
        self.staged = dict(listeners)
        if self.bind:  # the --concurrency parent only validates: its listeners never warm
            self.total_warming.set(len(built))

    def _build(self, name: str, model: Listener) -> _Staged | None:
        """The staged form of one listener; None when it serves as it is."""
        kept = self._warming.get(name)
        if kept is not None and (kept.model is model or kept.model == model):
            return kept  # staged before (warming): not built twice
        active = self.active.get(name)
        if active is not None and (self.models[name] is model or self.models[name] == model):
            return None
        generation = _build_generation(model, self.context)
        moved = (active is None or active.current.listener.address != model.address
                 or _kind(active.current.listener) != _kind(model))
        if not (self._binds(model) and moved):
            return _Staged(generation, None)
        try:
            sock = bind_listener_socket(model, reuse_port=self.reuse_port)
        except OSError as error:
            raise ListenerBindError(name, model.address, error) from error
        return _Staged(generation, sock)

    def activate(self, names: set[str] | None = None) -> list[ListenerBindError]:
        """Serve the staged listeners (those in `names`, or all); listeners no longer staged
        stop and drain. A listener whose socket cannot listen() keeps its previous version
        (counted in listener_create_failure, as Envoy); those errors are returned."""
        failures: list[ListenerBindError] = []
        for name in [name for name in self._warming if names is None or name in names]:
            error = self._serve(name, self._warming.pop(name))
            if error is not None:
                failures.append(error)
        for name in [name for name in self.active if name not in self.staged]:
            self.removed.inc()
            del self.models[name]
            removed = self.active.pop(name)
            if self.bind:
                log.info("listener %s removed (%s:%d, draining)", name, *removed.address)
            self._stop_later(removed)
        self.total_active.set(len(self.active))
        if self.bind:
            self.total_warming.set(len(self._warming))
        return failures

    def _serve(self, name: str, staged: _Staged) -> ListenerBindError | None:
        current = self.active.get(name)
        if current is not None and staged.sock is None:  # same address: a new generation
            current.swap(staged.generation)  # type: ignore[arg-type]  # same kind (_build)
            self.modified.inc()
            if self.bind:
                log.info("listener %s updated (%s:%d)", name, *current.address)
        else:
            new = self._active_listener(staged)
            if self._binds(staged.model):
                try:
                    new.start()
                except OSError as error:
                    staged.close()
                    self.create_failure.inc()
                    failure = ListenerBindError(name, staged.model.address, error)
                    log.error("%s", failure)
                    return failure
            if current is not None:
                self.modified.inc()
                self._stop_later(current)
            else:
                self.added.inc()
            if self.bind:
                log.info("listener %s %s (%s:%d)", name,
                         "added" if current is None else "updated", *new.address)
            self.active[name] = new
        self.models[name] = staged.model
        return None

    def _binds(self, model: Listener) -> bool:
        """--concurrency: QUIC listeners are bound by one worker only (proxy.workers)."""
        return self.bind and (model.quic is None or self.serve_quic)

    def _active_listener(self, staged: _Staged
                         ) -> ActiveListener | ActiveUdpListener | QuicActiveListener:
        if isinstance(staged.generation, UdpGeneration):
            return ActiveUdpListener(staged.generation, sock=staged.sock,
                                     reuse_port=self.reuse_port)
        kind = QuicActiveListener if staged.model.quic is not None else ActiveListener
        return kind(staged.model, self.context, reuse_port=self.reuse_port,
                    drain_timeout=self.drain_timeout, generation=staged.generation,
                    sock=staged.sock)

    def _stop_later(self, listener: ActiveListener | ActiveUdpListener | QuicActiveListener
                    ) -> None:
        self._stopping.spawn(listener.stop(), f"stop {listener.current.listener.name}")

    def addresses(self) -> dict[str, tuple[str, int]]:
        return {name: active.address for name, active in self.active.items()}

    async def drain(self, grace: float) -> None:
        """Shutdown: every listener stops accepting; connections finish what is in flight
        (HTTP/1.1 `connection: close`, HTTP/2 GOAWAY) for at most `grace` seconds."""
        stopping = list(self.active.values())
        self.active.clear()
        for active in stopping:
            if not isinstance(active, ActiveUdpListener):  # UDP sessions end as it stops
                active.drain_timeout = grace
        await asyncio.gather(*(active.stop() for active in stopping))

    async def close(self) -> None:
        for staged in self._warming.values():
            staged.close()
        self._warming.clear()
        for active in list(self.active.values()):
            await active.close_now()
        self.active.clear()
        await self._stopping.close()
