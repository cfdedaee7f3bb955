"""The readiness probe's I/O: a TCP connect or an HTTP GET to the application, each within
the probe's timeout, fed to the sans-I/O state (probe.py); each change is handed to `report`
(the ADS client's `report_health`). One task, owned by the proxy's Server TaskSet."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

from proxy.readiness.probe import ProbeSettings, ReadinessState

log = logging.getLogger(__name__)

Report = Callable[[bool, str], None]


async def run_probe(settings: ProbeSettings, report: Report) -> None:
    """Probe until cancelled (the first probe after initialDelaySeconds)."""
    loop = asyncio.get_running_loop()
    state = ReadinessState(settings)
    state.start(loop.time())
    log.info("readiness probe: %s", settings)
    while True:
        await asyncio.sleep(max(0.0, state.next_at - loop.time()))
        started = loop.time()
        change = state.probed(started, await check(settings))
        if change is not None:
            log.log(logging.INFO if change.healthy else logging.WARNING,
                    "application %s%s", "ready" if change.healthy else "not ready",
                    f": {change.message}" if change.message else "")
            report(change.healthy, change.message)


async def check(settings: ProbeSettings) -> str | None:
    """One probe: None on success, else what failed."""
    target = f"{settings.host}:{settings.port}"
    try:
        async with asyncio.timeout(settings.timeout):
            if settings.path is None:
                return await _tcp(settings)
            return await _http_get(settings)
    except TimeoutError:
        return f"{target}: timed out after {settings.timeout:g}s"
    except OSError as error:  # asyncio's connect error hides the reason in errno
        return f"{target}: {os.strerror(error.errno) if error.errno else error}"


async def _tcp(settings: ProbeSettings) -> str | None:
    _reader, writer = await asyncio.open_connection(settings.host, settings.port)
    await _close(writer)
    return None


async def _http_get(settings: ProbeSettings) -> str | None:
    """Kubernetes' httpGet: a status from 200 to 399 is a success (pkg/probe/http)."""
    reader, writer = await asyncio.open_connection(settings.host, settings.port)
    try:
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        writer.write(f"GET {settings.path} HTTP/1.1\r\nHost: {host}:{settings.port}\r\n"
                     f"User-Agent: pointsman-probe\r\nConnection: close\r\n\r\n".encode())
        line = await reader.readline()
    finally:
        await _close(writer)
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return f"GET {settings.path}: not an HTTP response"
    status = int(parts[1])
    return None if 200 <= status < 400 else f"GET {settings.path}: HTTP {status}"


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
