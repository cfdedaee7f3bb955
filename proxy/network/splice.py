"""Zero-copy relay between two plain TCP sockets: `os.splice` through a pipe per direction.

The bytes never enter Python: splice(2) moves them socket -> pipe -> socket inside the kernel.
The adapter is a pair of readiness callbacks per direction on the raw fds (loop.add_reader /
add_writer); Python only sees byte counts. Half-close follows Envoy's tcp_proxy: a FIN from one
side is passed on as shutdown(SHUT_WR) to the other once its pipe is empty, and the relay ends
when both directions have ended, on an error (both sides then close), or after `idle_timeout`
seconds without bytes in either direction.

A `gate` (the connection's read filters, proxy.network.read_filters) sees each read from the
downstream, by its size, once it is in the pipe and before it goes on; a refused read stays
in the pipe, which is dropped, and the relay ends (RelayClosed with `filtered`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Callable

# (bytes read, end of stream) -> go on; the connection's read filters (network rbac)
Gate = Callable[[int, bool], bool]

PIPE_SIZE = 1 << 20  # /proc/sys/fs/pipe-max-size is 1 MiB by default
_DEFAULT_PIPE_SIZE = 1 << 16
_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
_MAX_ROUNDS_PER_WAKEUP = 16  # bound the work per callback so other connections get a turn


class RelayClosed(Exception):
    """A relay ended early: a reset or broken pipe (`idle` False) or the idle timeout."""

    def __init__(self, message: str, *, idle: bool = False, filtered: bool = False) -> None:
        super().__init__(message)
        self.idle = idle
        self.filtered = filtered  # a read filter closed the connection


class _Direction:
    """One way: `source` socket -> pipe -> `destination` socket."""

    def __init__(self, relay: SpliceRelay, source: socket.socket, destination: socket.socket,
                 buffer_limit: int, *, from_upstream: bool, gate: Gate | None = None) -> None:
        self.relay = relay
        self.gate = gate
        self.from_upstream = from_upstream  # the source is the upstream socket
        self.source = source.fileno()
        self.destination = destination
        self.read_end, self.write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # The pipe is this direction's buffer: sized by Envoy's per_connection_buffer_limit_bytes
        # of the reading side (the kernel rounds up to pages, at least one page).
        self.chunk = max(4096, min(buffer_limit, PIPE_SIZE))
        if self.chunk != _DEFAULT_PIPE_SIZE:
            with contextlib.suppress(OSError):
                self.chunk = fcntl.fcntl(self.write_end, fcntl.F_SETPIPE_SZ, self.chunk)
        self.pending = 0
        self.transferred = 0
        self.source_ended = False
        self.finished = False
        self.reading = False
        self.waiting_writable = False

    def start(self) -> None:
        self._read_on()

    def _read_on(self) -> None:
        if not self.reading:
            self.relay.loop.add_reader(self.source, self._on_readable)
            self.reading = True

    def _read_off(self) -> None:
        if self.reading:
            self.relay.loop.remove_reader(self.source)
            self.reading = False

    def _on_readable(self) -> None:
        # Move as much as is ready in one wake-up: fewer trips through the event loop.
        for _ in range(_MAX_ROUNDS_PER_WAKEUP):
            try:
                moved = os.splice(self.source, self.write_end, self.chunk, flags=_FLAGS)
            except BlockingIOError:
                return
            except OSError as error:
                self.relay.fail(error, upstream=self.from_upstream)
                return
            if self.gate is not None and not self.gate(moved, moved == 0):
                self._read_off()  # nothing more is read, nor shown to the gate
                self.relay.filtered()
                return
            if moved == 0:
                self.source_ended = True
                self.relay.side_ended(upstream=self.from_upstream)
                self._read_off()
                self._flush()
                return
            self.pending += moved
            self.transferred += moved
            self.relay.touch()
            if not self._flush() or not self.reading:
                return

    def _on_writable(self) -> None:
        self._flush()

    def _flush(self) -> bool:
        """Empty the pipe into the destination; False if it would block (or failed)."""
        destination = self.destination.fileno()
        while self.pending:
            try:
                moved = os.splice(self.read_end, destination, self.pending, flags=_FLAGS)
            except BlockingIOError:
                self._wait_writable(destination)
                return False
            except OSError as error:
                self.relay.fail(error, upstream=not self.from_upstream)
                return False
            self.pending -= moved
        if self.waiting_writable:
            self.relay.loop.remove_writer(destination)
            self.waiting_writable = False
        if self.source_ended:
            self._finish()
        else:
            self._read_on()
        return True

    def _wait_writable(self, destination: int) -> None:
        # Back-pressure: stop reading until the destination drains the pipe.
        self._read_off()
        if not self.waiting_writable:
            self.relay.loop.add_writer(destination, self._on_writable)
            self.waiting_writable = True

    def _finish(self) -> None:
        with contextlib.suppress(OSError):
            self.destination.shutdown(socket.SHUT_WR)  # pass the FIN on (half-close)
        self.finished = True
        self.relay.direction_finished()

    def stop(self) -> None:
        self._read_off()
        if self.waiting_writable:
            with contextlib.suppress(ValueError, OSError):
                self.relay.loop.remove_writer(self.destination.fileno())
            self.waiting_writable = False
        for fd in (self.read_end, self.write_end):
            with contextlib.suppress(OSError):
                os.close(fd)


class SpliceRelay:
    """Relay both ways between `downstream` and `upstream` until both end; sockets stay open
    (the caller closes them in `finally`)."""

    def __init__(self, downstream: socket.socket, upstream: socket.socket, *,
                 idle_timeout: float | None, downstream_buffer: int = PIPE_SIZE,
                 upstream_buffer: int = PIPE_SIZE, gate: Gate | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.idle_timeout = idle_timeout
        self.last_activity = time.monotonic()
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.upstream_bound = _Direction(self, downstream, upstream, downstream_buffer,
                                         from_upstream=False, gate=gate)
        self.downstream_bound = _Direction(self, upstream, downstream, upstream_buffer,
                                           from_upstream=True)
        self._idle_timer: asyncio.TimerHandle | None = None
        # Whether the upstream's end (its FIN or an error on it) was the relay's last event:
        # Envoy then counts the upstream connection's close as remote, else as local.
        self.upstream_closed_last = False

    def __repr__(self) -> str:
        return (f"SpliceRelay(up={self.upstream_bound.transferred}, "
                f"down={self.downstream_bound.transferred}, done={self.done.done()})")

    async def run(self) -> None:
        """Relay until both directions end; raises RelayClosed on reset or idle timeout."""
        self.upstream_bound.start()
        self.downstream_bound.start()
        self._arm_idle_timer(self.idle_timeout)
        try:
            await self.done
        finally:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            self.upstream_bound.stop()
            self.downstream_bound.stop()

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def side_ended(self, *, upstream: bool) -> None:
        """A side sent its FIN (the relay goes on the other way)."""
        if not self.done.done():
            self.upstream_closed_last = upstream

    def fail(self, error: BaseException, *, upstream: bool) -> None:
        """A reset or broken pipe on the upstream (`upstream`) or the downstream socket."""
        if not self.done.done():
            self.upstream_closed_last = upstream
            self.done.set_exception(RelayClosed(str(error)))

    def filtered(self) -> None:
        """The gate refused a downstream read: end now, nothing more is relayed."""
        if not self.done.done():
            self.upstream_closed_last = False  # we close both
            self.done.set_exception(RelayClosed("closed by a read filter", filtered=True))

    def _idle_out(self) -> None:
        if not self.done.done():
            self.upstream_closed_last = False  # we close both
            self.done.set_exception(RelayClosed("idle timeout", idle=True))

    def direction_finished(self) -> None:
        if self.upstream_bound.finished and self.downstream_bound.finished \
                and not self.done.done():
            self.done.set_result(None)

    def _arm_idle_timer(self, delay: float | None) -> None:
        if delay is not None:
            self._idle_timer = self.loop.call_later(delay, self._check_idle)

    def _check_idle(self) -> None:
        # One timer per connection, re-armed lazily: cheaper than resetting it on every read.
        assert self.idle_timeout is not None
        idle_for = time.monotonic() - self.last_activity
        if idle_for >= self.idle_timeout:
            self._idle_out()
        else:
            self._arm_idle_timer(self.idle_timeout - idle_for)
