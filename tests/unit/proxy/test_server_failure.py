"""A server task that raises ends the process (proxy.main waits on `Server.failed`): the
failure is kept as one line, not lost as "Task exception was never retrieved"."""

from __future__ import annotations

import asyncio

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2

from proxy.bootstrap import translate_bootstrap
from proxy.server import Server


async def test_an_exception_in_initialization_fails_the_server(
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = Server(translate_bootstrap(bootstrap_pb2.Bootstrap()))

    def broken() -> bool:
        raise RuntimeError("boom")

    monkeypatch.setattr(server, "_warm", broken)
    try:
        await server.start()
        async with asyncio.timeout(10):
            await server.failed.wait()
        assert server.failure == "server: initialization: internal error: RuntimeError('boom')"
        assert not server.ready
    finally:
        await server.close()
