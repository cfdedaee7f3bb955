"""stop_servers leaves no socket behind while clients keep connecting (the Python 3.11
close/accept race that once failed CI through an Envoy health check), and ends connections
whose handlers would otherwise hold them open."""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import warnings

from tests.support.tcp_servers import port_of, start_server, stop_servers


def _keep_connecting(port: int, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            pass


async def _close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def test_stopping_under_a_stream_of_connects_leaks_nothing() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(20):
            server = await start_server(_close_at_once)
            stop = threading.Event()
            client = threading.Thread(target=_keep_connecting, args=(port_of(server), stop))
            client.start()
            try:
                for _ in range(10):  # wake-ups from threads: the order that exposed the race
                    await asyncio.to_thread(lambda: None)
                await stop_servers(server)
            finally:
                stop.set()
                client.join()
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_connections_held_by_their_handlers_are_closed() -> None:
    held = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.set()
        await reader.read()  # until the peer, or stop_servers, ends the connection

    server = await start_server(hold)
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
    try:
        await asyncio.wait_for(held.wait(), 5)
        await stop_servers(server)
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()
