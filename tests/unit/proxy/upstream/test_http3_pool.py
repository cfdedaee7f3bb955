"""The HTTP/3 pool's bookkeeping, no sockets: connections are built without a transport and
their handshake and the server's MAX_STREAMS are set by the test."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.codec.events import ResetReason, StreamReset
from proxy.codec.headers import Headers, RequestHead
from proxy.stats import Stats
from proxy.upstream.circuit_breakers import CircuitBreaker, Resource, RoutingPriority, Thresholds
from proxy.upstream.host import Host
from proxy.upstream.pools.base import ConnectFailedError, PoolOverflowError
from proxy.upstream.pools.http3 import Http3Connection, Http3Pool

HEAD = RequestHead("GET", "/", "svc", "https", Headers())


class FakeRuntime:
    def __init__(self, **thresholds: int) -> None:
        self.stats = Stats()
        self.prefix = "cluster.h3."
        self.breaker = CircuitBreaker("h3", RoutingPriority.DEFAULT, Thresholds(**thresholds),
                                      self.stats)
        self.closed: list[dict[str, Any]] = []

    def circuit_breaker(self) -> CircuitBreaker:
        return self.breaker

    def connection_closed(self, host: Host, **how: Any) -> None:
        self.closed.append(how)


def ready_connection(pool: Http3Pool, max_streams: int) -> Http3Connection:
    """A connection as _connect leaves it: handshake done, a max_connections slot taken."""
    connection = Http3Connection(pool)
    connection.handshake.set_result(None)
    connection.quic._remote_max_streams_bidi = max_streams
    connection.opened = True
    assert pool.breakers.may_connect(pool_is_empty=not pool.connections)
    pool.connections.append(connection)
    return connection


def make_pool(**thresholds: int) -> tuple[Http3Pool, FakeRuntime]:
    runtime = FakeRuntime(**thresholds)
    return Http3Pool(runtime, Host("127.0.0.1", 443), connect_timeout=1.0, tls=None), runtime


async def test_streams_up_to_the_servers_max_streams() -> None:
    pool, _ = make_pool()
    connection = ready_connection(pool, max_streams=2)
    first, second = pool.try_new_stream(), pool.try_new_stream()
    assert first is not None and second is not None
    assert pool.try_new_stream() is None  # at the limit: the request would wait
    first.send_head_nowait(HEAD, end_stream=True)
    first.release()
    assert pool.try_new_stream() is None  # MAX_STREAMS is cumulative (RFC 9000 4.6)
    connection.quic._remote_max_streams_bidi = 3  # the server's MAX_STREAMS frame
    assert pool.try_new_stream() is not None


async def test_request_slots_are_given_back_on_every_path() -> None:
    pool, runtime = make_pool(max_requests=2)
    ready_connection(pool, max_streams=100)
    released, reset = pool.try_new_stream(), pool.try_new_stream()
    assert released is not None and reset is not None
    with pytest.raises(PoolOverflowError):
        pool.try_new_stream()
    assert not pool.connections[0].unsent - {released, reset}  # the refused one gave its slot
    released.send_head_nowait(HEAD, end_stream=True)
    released.release()
    reset.reset()  # never sent: abandoned before its head
    assert runtime.breaker.in_use[Resource.REQUESTS] == 0
    assert not pool.connections[0].streams and not pool.connections[0].unsent


async def test_connection_loss_fails_the_streams_in_flight() -> None:
    pool, runtime = make_pool()
    connection = ready_connection(pool, max_streams=100)
    streams = [pool.try_new_stream() for _ in range(2)]
    for stream in streams:
        assert stream is not None
        stream.send_head_nowait(HEAD, end_stream=True)
    connection._fail(ConnectFailedError("QUIC connection closed: Idle timeout"))
    for stream in streams:
        assert stream is not None
        event = stream.next_event_nowait()
        assert isinstance(event, StreamReset)
        assert event.reason is ResetReason.CONNECTION_TERMINATION
        stream.reset()  # what the router does with it
    assert pool.connections == []
    assert runtime.closed == [{"local": False, "with_active_request": True}]
    assert runtime.breaker.in_use == dict.fromkeys(Resource, 0)
    assert pool.try_new_stream() is None  # the next request opens a new connection


async def test_a_stream_on_a_closed_connection_is_reset_at_once() -> None:
    pool, _ = make_pool()
    connection = ready_connection(pool, max_streams=100)
    stream = pool.try_new_stream()
    assert stream is not None
    connection._fail(ConnectFailedError("gone"))
    stream.send_head_nowait(HEAD, end_stream=True)
    event = stream.next_event_nowait()
    assert isinstance(event, StreamReset)
    assert event.reason is ResetReason.CONNECTION_TERMINATION
