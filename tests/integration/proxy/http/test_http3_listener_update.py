"""A QUIC listener updated in place (LDS): new connections get the new generation's routes at
once; a connection of the old generation is drained (GOAWAY, then closed once idle) as TCP
listeners drain theirs (proxy.listeners.manager)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.listener.v3 import listener_pb2

from protos.loader import parse_message
from proxy.bootstrap import translate_bootstrap
from proxy.model.listener import Listener, translate_listener
from proxy.server import Server
from tests.integration.proxy.http.test_http3_proxy import make_certificate
from tests.support.http3 import h3_client, quic_bootstrap
from tests.support.ports import free_port


def _listener(port: int, body: str, certificate: tuple[Path, Path]) -> Listener:
    routes = [{"match": {"prefix": "/"},
               "direct_response": {"status": 200, "body": {"inline_string": body}}}]
    raw: dict[str, Any] = quic_bootstrap(port, routes, [], *certificate)[
        "static_resources"]["listeners"][0]
    return translate_listener(parse_message(raw, listener_pb2.Listener))


async def test_an_update_serves_new_connections_and_drains_the_old_ones(
        tmp_path: Path) -> None:
    certificate = make_certificate(tmp_path)
    port = free_port()
    server = Server(translate_bootstrap(bootstrap_pb2.Bootstrap()))
    manager = server.listener_manager
    try:
        manager.apply({"h3": _listener(port, "v1", certificate)})
        await asyncio.sleep(0.05)  # the datagram endpoint opens on the loop
        async with h3_client(port) as old:
            assert (await old.request("GET", "/")).body == b"v1"
            manager.apply({"h3": _listener(port, "v2", certificate)})
            async with h3_client(port) as new:
                assert (await new.request("GET", "/")).body == b"v2"
            async with asyncio.timeout(10):  # GOAWAY, no stream left: CONNECTION_CLOSE
                await old.protocol.wait_closed()
        assert manager.modified.value == 1
        assert server.stats.counter("http.ingress.downstream_cx_destroy_local").value >= 1
    finally:
        await manager.close()
