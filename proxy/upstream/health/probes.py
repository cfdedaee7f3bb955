"""One health check attempt against one address, for each checker kind: the I/O half of
active health checking. Each probe returns a `Verdict`; the timeout is enforced by the runner.

TCP and HTTP checks run over the cluster's TLS transport socket when it has one (as Envoy's do);
gRPC checks over TLS are refused at config time.

- TCP (health_check.proto TcpHealthCheck): connect; with a `send` payload write it, and with
  `receive` blocks read until every block has been seen in order (not necessarily contiguous,
  Envoy's "fuzzy" match). Connect-only when both are empty. Closed before a match: network
  failure.
- HTTP/1.1: see `proxy.upstream.health.http_prober` (keep-alive, as Envoy).
- gRPC (grpc.health.v1.Health/Check with `service_name`, `:authority` chosen as for HTTP):
  SERVING passes; another serving status or a non-OK grpc-status is an active failure;
  UNAVAILABLE before a response is a network failure. The channel is kept per host.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from proxy.model.health import GrpcCheck, TcpCheck
from proxy.upstream.health.state import Verdict


@dataclass(frozen=True)
class ProbeTls:
    """The cluster's upstream TLS, which Envoy's TCP and HTTP checks also use."""

    context: ssl.SSLContext
    sni: str = ""


async def _open(address: str, port: int, tls: ProbeTls | None
                ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if tls is None:
        return await asyncio.open_connection(address, port)
    # Empty server_hostname: no SNI and no hostname check, as Envoy without `sni`.
    return await asyncio.open_connection(address, port, ssl=tls.context,
                                         server_hostname=tls.sni)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):  # ssl.SSLError is an OSError
        await writer.wait_closed()


async def tcp_probe(address: str, port: int, check: TcpCheck,
                    tls: ProbeTls | None = None) -> Verdict:
    try:
        reader, writer = await _open(address, port, tls)
    except OSError:
        return Verdict.NETWORK_FAILURE
    try:
        if check.send:
            writer.write(check.send)
            await writer.drain()
        if not check.receive:
            return Verdict.SUCCESS
        received = b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return Verdict.NETWORK_FAILURE
            received += chunk
            if blocks_found_in_order(received, check.receive):
                return Verdict.SUCCESS
    except OSError:
        return Verdict.NETWORK_FAILURE
    finally:
        await _close(writer)


def blocks_found_in_order(data: bytes, blocks: tuple[bytes, ...]) -> bool:
    """Every block appears in `data`, each after the previous one (Envoy TcpHealthCheck)."""
    start = 0
    for block in blocks:
        found = data.find(block, start)
        if found < 0:
            return False
        start = found + len(block)
    return True


class GrpcProber:
    """A grpc.aio channel to one host, reused across checks; `close()` when the host goes."""

    def __init__(self, address: str, port: int, check: GrpcCheck, authority: str) -> None:
        target = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        self._channel = grpc.aio.insecure_channel(
            target, options=[("grpc.default_authority", authority)])
        self._stub = health_pb2_grpc.HealthStub(self._channel)
        self._service = check.service_name

    async def probe(self, deadline_seconds: float) -> Verdict:
        request = health_pb2.HealthCheckRequest(service=self._service)
        try:
            response = await self._stub.Check(request, timeout=deadline_seconds)
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                return Verdict.TIMEOUT
            if error.code() is grpc.StatusCode.UNAVAILABLE:
                return Verdict.NETWORK_FAILURE
            return Verdict.ACTIVE_FAILURE
        if response.status == health_pb2.HealthCheckResponse.SERVING:
            return Verdict.SUCCESS
        return Verdict.ACTIVE_FAILURE

    async def close(self) -> None:
        await self._channel.close()
