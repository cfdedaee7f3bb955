"""The control plane serving the mesh API (`--store`), and the `pointsman` verbs run as a
user runs them (a process each, exit status and output kept)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from tests.support.envoy import Envoy
from tests.support.http_backends import EchoBackend
from tests.support.mesh import Member, sidecar_bootstrap
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port, wait_for_port
from tests.support.processes import REPO, ManagedProcess, http_get, python_argv


class ApiControlPlane(ManagedProcess):
    """`python -m controlplane --store STORE` on free loopback ports (or the ports given, so
    a restarted one is found where sidecars look)."""

    def __init__(self, store: str, *extra: str, port: int | None = None,
                 api_port: int | None = None, admin_port: int | None = None,
                 name: str = "api-cp", env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.api_port = api_port or free_port()
        self.admin_port = admin_port or free_port()
        self.store = store
        super().__init__(python_argv("-m", "controlplane", "--store", store,
                                     "--listen", f"127.0.0.1:{self.port}",
                                     "--api", f"127.0.0.1:{self.api_port}",
                                     "--admin", f"127.0.0.1:{self.admin_port}", *extra),
                         name=name, env=env)

    @property
    def api(self) -> str:
        return f"127.0.0.1:{self.api_port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.wait_until(lambda: http_get(f"http://127.0.0.1:{self.admin_port}/ready")[0] == 200,
                        timeout, "ready")
        wait_for_port(self.port)
        wait_for_port(self.api_port)

    def status(self) -> dict[str, Any]:
        return dict(json.loads(http_get(f"http://127.0.0.1:{self.admin_port}/status")[1]))

    def restarted(self) -> ApiControlPlane:
        """A new process on the same ports and store (this one must be stopped)."""
        extra = self.argv[self.argv.index("--admin") + 2:]
        return ApiControlPlane(self.store, *extra, port=self.port, api_port=self.api_port,
                               admin_port=self.admin_port, name=self.name)


def pointsman(*args: str, server: str, stdin: str | bytes | None = None,
              timeout: float = 90.0, env: dict[str, str] | None = None,
              prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """`pointsman ARGS --server SERVER` as a subprocess (after `prefix`: `ip netns exec NS`,
    say); output as text."""
    data = stdin.encode() if isinstance(stdin, str) else stdin
    done = subprocess.run([*prefix, sys.executable, "-m", "controlplane.cli", *args,
                           "--server", server],
                          input=data, capture_output=True, timeout=timeout, cwd=REPO,
                          env=env, check=False)
    return subprocess.CompletedProcess(done.args, done.returncode,
                                       done.stdout.decode(errors="replace"),
                                       done.stderr.decode(errors="replace"))


def replicated_sidecar(stack: Any, flavour: str, xds_ports: list[int], service: str,
                       index: int, net: str, *, app_port: int | None = None,
                       delta: bool = False) -> Member:
    """A sidecar (as tests.support.mesh.start_sidecar) whose ADS cluster lists several control
    planes, tried in turn; `delta` for DELTA_GRPC (Envoy)."""
    instance, outbound, app_ip = f"{net}.1.{index}", f"{net}.2.{index}", f"{net}.3.{index}"
    app = None
    if app_port is not None:
        app = EchoBackend(f"{service}-{index}", port=app_port, host=app_ip)
        stack.enter_context(app)
    bootstrap = sidecar_bootstrap(f"{service}-{index}", service, xds_ports[0],
                                  instance_ip=instance, outbound_ip=outbound, app_ip=app_ip)
    cluster = bootstrap["static_resources"]["clusters"][0]
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"] = [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                     "port_value": port}}}}
        for port in xds_ports]
    ads = bootstrap["dynamic_resources"]["ads_config"]
    ads["grpc_services"][0]["envoy_grpc"]["retry_policy"] = {
        "retry_back_off": {"base_interval": "0.2s", "max_interval": "1s"}}
    if delta:
        ads["api_type"] = "DELTA_GRPC"
    kind = Envoy if flavour == "envoy" else Pointsman
    proxy = kind(bootstrap, name=f"{flavour}-{service}-{index}")
    stack.enter_context(proxy)
    return Member(service, proxy, instance, outbound, app)
