"""UDP listeners at run time: one bound datagram socket, its reader, and the dispatch of its
datagrams (Envoy doc: intro/arch_overview/listeners/listeners, "UDP").

Dispatch, in one place: a UDP listener with a udp_proxy listener filter hands every datagram
to proxy.udp.proxy.UdpProxyFilter. (A listener with `udp_listener_config.quic_options` is a
QUIC listener, served by proxy.listeners.quic: the manager picks it by the model's `quic`.)

`max_rx_datagram_size` (default 1500, as Envoy): a longer datagram is dropped and counted in
`listener.<name>.udp.downstream_rx_datagram_dropped`, as Envoy does (it reads one byte more
than the limit to see the truncation).

Updates: the manager stages a new generation (a new UdpProxyFilter) and swaps it in;
datagrams go to the new one at once, and the old one's sessions end there and then (their
upstream sockets close, each is access-logged), as do a removed listener's. A UDP listener is
not drained like a TCP one: Envoy stops a UDP listener by destroying it, and its udp_proxy
sessions with it (envoyproxy/envoy#7465, "UdpListener stops abruptly"); Envoy 1.40 was seen to
do so on an in-place update and on a removal (tests/conformance/proxy/
test_udp_listener_update_vs_envoy.py), and the client's next datagram opens a session on the
new generation.

With `--concurrency N`, every worker binds the listener with SO_REUSEPORT: Linux spreads the
datagrams over the sockets by a hash of the 4-tuple, so one client (address and port) always
reaches the same worker and its session lives there.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass

from proxy.context import ServerContext
from proxy.listeners.shared import bind_socket, bound_address
from proxy.model.listener import Listener
from proxy.stats import Counter
from proxy.udp.proxy import UdpProxyFilter

log = logging.getLogger(__name__)

_READ_BATCH = 64  # datagrams read per readiness event before yielding to the loop


def bind_udp_socket(listener: Listener, *, reuse_port: bool) -> socket.socket:
    """A non-blocking datagram socket bound to the listener's address."""
    return bind_socket(listener, socket.SOCK_DGRAM, reuse_port=reuse_port)


@dataclass(eq=False)
class UdpGeneration:
    """One version of a UDP listener's config and the udp_proxy built from it."""

    listener: Listener
    proxy: UdpProxyFilter | None  # None: no UDP listener filter, datagrams are dropped
    dropped: Counter  # listener.<name>.udp.downstream_rx_datagram_dropped

    @classmethod
    def build(cls, listener: Listener, context: ServerContext) -> UdpGeneration:
        """The dispatch of a UDP listener's datagrams, in one place: its udp_proxy (or
        nothing). A QUIC listener (`udp_listener_config.quic_options`) is not one of these:
        proxy.listeners.quic serves it."""
        assert listener.udp is not None
        dropped = context.stats.counter(
            f"listener.{listener.stats_name}.udp.downstream_rx_datagram_dropped")
        config = listener.udp.proxy
        return cls(listener, UdpProxyFilter(config, context) if config else None, dropped)


class ActiveUdpListener:
    """A bound UDP socket serving one generation; a replaced generation's sessions end."""

    def __init__(self, generation: UdpGeneration, *, sock: socket.socket | None = None,
                 reuse_port: bool = False) -> None:
        self.current = generation
        self.reuse_port = reuse_port
        self.sock = sock
        self._reading = False

    def __repr__(self) -> str:
        return (f"ActiveUdpListener({self.current.listener.name} {self.address}, "
                f"proxy={self.current.proxy!r})")

    @property
    def address(self) -> tuple[str, int]:
        return bound_address(self.sock, self.current.listener.address)

    def start(self) -> None:
        if self.sock is None:
            self.sock = bind_udp_socket(self.current.listener, reuse_port=self.reuse_port)
        self._attach(self.current)
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)
        self._reading = True

    def swap(self, generation: UdpGeneration) -> None:
        old = self.current
        self.current = generation
        self._attach(generation)
        _end_sessions(old)

    async def stop(self) -> None:
        self._stop_reading()
        if self.sock is not None:
            self.sock.close()
        _end_sessions(self.current)

    async def close_now(self) -> None:
        await self.stop()

    def _attach(self, generation: UdpGeneration) -> None:
        assert self.sock is not None
        sock = self.sock
        if generation.proxy is None:
            return
        host, port = sock.getsockname()[:2]

        def send(data: bytes, peer: tuple[str, int]) -> bool:
            try:
                sock.sendto(data, peer)
            except OSError:
                return False
            return True

        generation.proxy.attach(send, (host, port))

    def _stop_reading(self) -> None:
        if self._reading and self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self._reading = False

    def _readable(self) -> None:
        """Read what is queued (up to a bound) and hand each datagram to the generation."""
        assert self.sock is not None
        generation = self.current
        proxy = generation.proxy
        assert generation.listener.udp is not None
        limit = generation.listener.udp.max_rx_datagram_size
        for _ in range(_READ_BATCH):
            try:
                data, peer = self.sock.recvfrom(limit + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # e.g. an ICMP error queued on the socket
                if proxy is not None:
                    proxy.stats.rx_errors.inc()
                log.debug("udp listener %s: %s", generation.listener.name, error)
                continue
            if len(data) > limit:
                generation.dropped.inc()
            elif proxy is not None:
                proxy.datagram_received(data, (peer[0], peer[1]))


def _end_sessions(generation: UdpGeneration) -> None:
    """A generation no datagram reaches any more: its sessions end now (module docstring)."""
    if generation.proxy is not None:
        generation.proxy.close()
