"""HTTP/1.1 health checks with Envoy's connection reuse (health_check.proto HttpHealthCheck,
`reuse_connection`, default true): one keep-alive connection per host, reopened when the
server closes it or a check fails, closed after every check when `reuse_connection` is false.

Request: `METHOD path HTTP/1.1`, `Host:` the authority the runner chose (Envoy: the endpoint's
health_check_config.hostname, else `host`, else the cluster name), `User-Agent: Envoy/HC`.
A status in `expected_statuses` passes (degraded when the response carries `x-envoy-degraded`);
any other status is an active failure; a connect error, reset or malformed response is a
network failure. Responses are parsed with h11, so bodies (length or chunked) are consumed and
the connection stays usable.
"""

from __future__ import annotations

import asyncio
import contextlib

import h11

from proxy.model.health import HttpCheck
from proxy.upstream.health.probes import ProbeTls
from proxy.upstream.health.state import Verdict

_READ_SIZE = 65536


class HttpProber:
    def __init__(self, address: str, port: int, check: HttpCheck, authority: str, *,
                 tls: ProbeTls | None = None, reuse_connection: bool = True) -> None:
        self.address = address
        self.port = port
        self.check = check
        self.authority = authority
        self.tls = tls
        self.reuse_connection = reuse_connection
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._h11: h11.Connection | None = None
        self.connections_opened = 0

    def __repr__(self) -> str:
        state = "open" if self._writer is not None else "closed"
        return f"HttpProber({self.address}:{self.port}{self.check.path}, {state})"

    async def probe(self) -> Verdict:
        """One check; the caller bounds it with the check's timeout (then call `close`)."""
        clean = False
        if self._reader is not None and self._reader.at_eof():
            # The server closed the kept connection between checks: Envoy just drops it and
            # opens a new one (not a failure).
            await self.close()
        try:
            if self._writer is None:
                try:
                    await self._connect()
                except OSError:
                    return Verdict.NETWORK_FAILURE
            verdict = await self._exchange()
            clean = verdict is not Verdict.NETWORK_FAILURE
            return verdict
        except (OSError, h11.ProtocolError):
            return Verdict.NETWORK_FAILURE
        finally:
            if not clean or not self.reuse_connection or not self._can_reuse():
                await self.close()

    async def _connect(self) -> None:
        if self.tls is None:
            self._reader, self._writer = await asyncio.open_connection(self.address, self.port)
        else:
            # Empty server_hostname: no SNI and no hostname check, as Envoy without `sni`.
            self._reader, self._writer = await asyncio.open_connection(
                self.address, self.port, ssl=self.tls.context, server_hostname=self.tls.sni)
        self._h11 = h11.Connection(h11.CLIENT)
        self.connections_opened += 1

    async def _exchange(self) -> Verdict:
        assert self._writer is not None and self._h11 is not None
        headers = [("Host", self.authority), ("User-Agent", "Envoy/HC")]
        if not self.reuse_connection:
            headers.append(("Connection", "close"))
        request = h11.Request(method=self.check.method, target=self.check.path, headers=headers)
        self._writer.write(self._h11.send(request) + self._h11.send(h11.EndOfMessage()))
        await self._writer.drain()
        status: int | None = None
        degraded = False
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                assert self._reader is not None
                self._h11.receive_data(await self._reader.read(_READ_SIZE))
            elif isinstance(event, h11.Response):
                status = event.status_code
                degraded = any(name == b"x-envoy-degraded" for name, _ in event.headers)
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                return Verdict.NETWORK_FAILURE
        if status is None:
            return Verdict.NETWORK_FAILURE
        if not self.check.expects(status):
            return Verdict.ACTIVE_FAILURE
        return Verdict.DEGRADED if degraded else Verdict.SUCCESS

    def _can_reuse(self) -> bool:
        """After a full exchange: start the next cycle if both sides keep the connection."""
        if self._h11 is None:
            return False
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
            return True
        return False

    async def close(self) -> None:
        writer, self._writer, self._reader, self._h11 = self._writer, None, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):  # ssl.SSLError is an OSError
                await writer.wait_closed()
