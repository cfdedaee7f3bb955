"""Listener update in place: new connections get the new generation's filters at once, the
old generation is told to drain (start_draining) and its connections may finish; what is
still open after the drain time is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from envoy.extensions.filters.network.echo.v3 import echo_pb2

from proxy.context import ServerContext
from proxy.listeners.manager import ActiveListener
from proxy.network.base import register, unregister
from proxy.stats import Stats
from tests.support.ports import free_port
from tests.unit.proxy.listener_helpers import build, listener_dict

ECHO = "type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo"


class HoldingFilter:
    """Says which generation it is, then holds each connection: the first until drained,
    the others forever (they must be cancelled at the end of the drain time)."""

    def __init__(self, generation: int) -> None:
        self.tag = f"gen{generation}".encode()
        self.drained = asyncio.Event()
        self.served = 0
        self.cancelled = 0

    def start_draining(self) -> None:
        self.drained.set()

    async def on_new_connection(self, connection: Any) -> None:
        loop = asyncio.get_running_loop()
        self.served += 1
        graceful = self.served == 1
        try:
            await loop.sock_sendall(connection.sock, self.tag)
            if graceful:
                await self.drained.wait()
                await loop.sock_sendall(connection.sock, b" bye")
            else:
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            connection.sock.close()


class HoldingFactory:
    config_type = "envoy.extensions.filters.network.echo.v3.Echo"

    def __init__(self) -> None:
        self.created: list[HoldingFilter] = []

    def translate(self, message: Any) -> Any:
        assert isinstance(message, echo_pb2.Echo)
        return ()

    def create(self, config: Any, context: Any) -> HoldingFilter:
        self.created.append(HoldingFilter(len(self.created) + 1))
        return self.created[-1]


@pytest.fixture
def factory() -> Iterator[HoldingFactory]:
    found = HoldingFactory()
    register(found)
    yield found
    unregister(found)


def model(port: int, stat_prefix: str) -> Any:
    body = listener_dict({"filters": [{"name": "hold", "typed_config": {"@type": ECHO}}]},
                         stat_prefix=stat_prefix)
    body["address"]["socket_address"]["port_value"] = port
    return build(body)


async def test_update_drains_the_old_generation(factory: HoldingFactory) -> None:
    port = free_port()
    context = ServerContext(Stats(), None, None, None, None)  # type: ignore[arg-type]
    active = ActiveListener(model(port, "v1"), context, reuse_port=False, drain_timeout=0.5)
    active.start()
    streams = []
    try:
        for _ in range(2):
            streams.append(await asyncio.open_connection("127.0.0.1", port))
            assert await streams[-1][0].readexactly(4) == b"gen1"
        active.update(model(port, "v2"))
        streams.append(await asyncio.open_connection("127.0.0.1", port))
        assert await streams[-1][0].readexactly(4) == b"gen2"  # new config at once
        async with asyncio.timeout(10):
            assert await streams[0][0].read() == b" bye"  # drained gracefully
            assert await streams[1][0].read() == b""  # cancelled after the drain time
        old, new = factory.created
        assert old.cancelled == 1
        assert not new.drained.is_set() and new.cancelled == 0  # the new one is untouched
    finally:
        for _reader, writer in streams:
            writer.close()
        await active.close_now()
