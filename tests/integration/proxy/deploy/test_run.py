"""`pointsman run`: the sidecar starts first and the application once the sidecar is ready;
SIGTERM drains: requests in flight over HTTP/1.1 and HTTP/2 all finish (HTTP/1.1 answers
carry `connection: close`, the HTTP/2 connection gets GOAWAY NO_ERROR), no new connection
is taken, then the application stops and `run` exits 0, within the drain bound. A request
longer than the bound is cut when the bound passes."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tests.integration.proxy.http.clients import H2Client
from tests.support.mesh import MeshControlPlane, request
from tests.support.ports import free_port
from tests.support.processes import ManagedProcess, python_argv

NET = "127.181"
INSTANCE = f"{NET}.1.1"
MESH = """
apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  ports:
  - {name: http, port: 8080, targetPort: 9080, appProtocol: http}
  - {name: h2, port: 8081, targetPort: 9081, appProtocol: kubernetes.io/h2c}
"""


class _H2At(H2Client):
    """tests.integration.proxy.http.clients.H2Client to another loopback address."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(port)
        self.host = host

    async def __aenter__(self) -> _H2At:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.conn.initiate_connection()
        self.writer.write(self.conn.data_to_send())
        self.task = asyncio.create_task(self._read())
        return self


def _run(control_plane: MeshControlPlane, admin: int, drain: float) -> ManagedProcess:
    return ManagedProcess(python_argv(
        "-m", "proxy.deploy", "run", "--service", "api",
        "--server", f"127.0.0.1:{control_plane.port}", "--instance-ip", INSTANCE,
        "--outbound-ip", f"{NET}.2.1", "--app-ip", f"{NET}.3.1",
        "--admin", f"127.0.0.1:{admin}", "--app-port", "9080",
        "--shutdown-drain-s", str(drain), "--",
        *python_argv("-m", "tests.support.echo_app", "api", f"{NET}.3.1", "9080", "9081")),
        name="pointsman-run")


def _start(stack: ExitStack, tmp_path: Path, drain: float) -> ManagedProcess:
    (tmp_path / "mesh.yaml").write_text(MESH)
    control_plane = stack.enter_context(MeshControlPlane(tmp_path / "mesh.yaml"))
    control_plane.wait_ready()
    run = stack.enter_context(_run(control_plane, free_port(), drain))
    run.wait_until(lambda: "application ready" in run.output(), 60, "application ready")
    run.wait_until(lambda: _status(request((INSTANCE, 8080), "/", host="api")) == 200, 30,
                   "serving")
    return run


def _status(answer: tuple[int, Any, Any]) -> int:
    return answer[0]


def _slow_h1(delay: float) -> tuple[int, str]:
    try:
        status, headers, _body = request((INSTANCE, 8080), "/slow", host="api", timeout=30,
                                         headers={"x-echo-delay": str(delay)})
    except OSError as error:
        return 0, repr(error)
    return status, headers.get("connection", "")


def _slow_h2(delay: float) -> tuple[int, int | None]:
    async def call() -> tuple[int, int | None]:
        async with _H2At(INSTANCE, 8081) as client:
            response = await client.request("GET", "/slow", authority="api",
                                            headers=[("x-echo-delay", str(delay))])
            return response.status, None if client.goaway is None else client.goaway.error_code
    try:
        return asyncio.run(call())
    except (OSError, ConnectionError) as error:
        return 0, hash(repr(error))


def _refused() -> bool:
    try:
        socket.create_connection((INSTANCE, 8080), timeout=1).close()
    except OSError:
        return True
    return False


def test_start_order_and_drain_on_sigterm(tmp_path: Path) -> None:
    with ExitStack() as stack:
        run = _start(stack, tmp_path, drain=15.0)
        assert "echo-app api started; sidecar /ready: 200" in run.output()
        with ThreadPoolExecutor(8) as pool:
            h1 = [pool.submit(_slow_h1, 2.0) for _ in range(4)]
            h2 = [pool.submit(_slow_h2, 2.0) for _ in range(2)]
            time.sleep(0.8)  # the requests are at the application now
            began = time.monotonic()
            run.popen.send_signal(signal.SIGTERM)  # `run` only, as an orchestrator does
            run.wait_until(_refused, 5, "refusing new connections")
            assert all(future.result() == (200, "close") for future in h1), \
                [future.result() for future in h1]
            assert all(future.result() == (200, 0) for future in h2), \
                [future.result() for future in h2]
        assert run.popen.wait(30) == 0
        took = time.monotonic() - began
        assert took < 12, took  # the requests' 2 s, not the 15 s bound
        out = run.output()
        assert out.index("stopping: draining the sidecar") < out.index("drained in") \
            < out.index("echo-app api stopping") < out.index("stopped")


def test_the_drain_is_bounded(tmp_path: Path) -> None:
    with ExitStack() as stack:
        run = _start(stack, tmp_path, drain=1.0)
        with ThreadPoolExecutor(1) as pool:
            stuck = pool.submit(_slow_h1, 30.0)
            time.sleep(0.8)
            began = time.monotonic()
            run.popen.send_signal(signal.SIGTERM)
            assert run.popen.wait(30) == 0
            assert time.monotonic() - began < 10
            assert stuck.result()[0] != 200  # cut when the bound passed
