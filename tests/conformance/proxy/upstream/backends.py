"""Shared pieces of the upstream conformance tests: tcp_proxy listeners for Envoy, backends
that answer with their own port, and a client that asks Envoy which backend it picked."""

from __future__ import annotations

import asyncio
from typing import Any


def tcp_proxy_listener(name: str, port: int, cluster: str) -> dict[str, Any]:
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": {
                "@type": "type.googleapis.com/"
                         "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                "stat_prefix": name, "cluster": cluster,
                "hash_policy": [{"source_ip": {}}]}}]}],
    }


async def answer_port(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    port = writer.get_extra_info("sockname")[1]
    writer.write(f"{port}\n".encode())
    try:
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def picked_by_envoy(listen_port: int, source: str) -> int | None:
    """The backend port Envoy connected this source to; None when Envoy closed the connection
    without data (it picked a host that refuses connections)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", listen_port,
                                                   local_addr=(source, 0))
    try:
        async with asyncio.timeout(10):
            line = await reader.readline()
    except ConnectionError:
        line = b""
    finally:
        writer.close()
    return int(line) if line.strip() else None


def endpoint(port: int) -> dict[str, Any]:
    return {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                        "port_value": port}}}}

