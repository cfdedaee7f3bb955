"""A mesh on loopback for tests: the control plane serving `--mesh`, sidecars (Pointsman or
Envoy, same bootstrap) registered as their Services, and the applications behind them.

Each sidecar gets its own loopback addresses (instance_ip for inbound, outbound_ip for
outbound, app_ip for its application) inside a /16 the test picks, so Service ports can be
fixed numbers without colliding with anything else on the machine.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.envoy import Envoy
from tests.support.http_backends import EchoBackend
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port, wait_for_port
from tests.support.processes import ManagedProcess, http_get, python_argv
from tests.support.proxies import AdminProxy

H2 = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


class MeshControlPlane(ManagedProcess):
    """`python -m controlplane --mesh PATH` on free loopback ports."""

    def __init__(self, mesh: Path, *extra: str) -> None:
        self.port = free_port()
        self.admin_port = free_port()
        super().__init__(python_argv("-m", "controlplane", "--mesh", str(mesh),
                                     "--listen", f"127.0.0.1:{self.port}",
                                     "--admin", f"127.0.0.1:{self.admin_port}",
                                     "--poll-interval", "0.2", *extra), name="mesh-cp")

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.wait_until(lambda: http_get(f"http://127.0.0.1:{self.admin_port}/ready")[0] == 200,
                        timeout, "ready")
        wait_for_port(self.port)

    def status(self) -> dict[str, Any]:
        return dict(json.loads(http_get(f"http://127.0.0.1:{self.admin_port}/status")[1]))


def sidecar_bootstrap(node_id: str, service: str, xds_port: int, *, namespace: str = "default",
                      instance_ip: str | None = None, outbound_ip: str | None = None,
                      app_ip: str | None = None, kind: str | None = None,
                      delta: bool = False) -> dict[str, Any]:
    metadata = {key: value for key, value in (
        ("namespace", namespace), ("instance_ip", instance_ip), ("outbound_ip", outbound_ip),
        ("app_ip", app_ip), ("kind", kind)) if value is not None}
    return {
        "node": {"id": node_id, "cluster": service, "metadata": metadata},
        "dynamic_resources": {
            "ads_config": {"api_type": "DELTA_GRPC" if delta else "GRPC",
                           "transport_api_version": "V3",
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
            "cds_config": {"ads": {}, "resource_api_version": "V3"}},
        "static_resources": {"clusters": [{
            "name": "xds", "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": H2, "explicit_http_config": {"http2_protocol_options": {}}}},
            "load_assignment": {"cluster_name": "xds", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": xds_port}}}}]}]}}]},
    }


@dataclass
class Member:
    """One sidecar with its addresses (and the echo application behind it, if any)."""

    service: str
    proxy: AdminProxy
    instance_ip: str
    outbound_ip: str
    app: EchoBackend | None = None


def start_sidecar(stack: ExitStack, flavour: str, control_plane: MeshControlPlane,
                  service: str, index: int, net: str, *, app_port: int | None = None,
                  namespace: str = "default", http2: bool = False, app: Any = None,
                  delta: bool = False) -> Member:
    """Sidecar number `index` (1..250) of `service` in `net` (say "127.91"): instance_ip
    NET.1.INDEX, outbound_ip NET.2.INDEX, app_ip NET.3.INDEX with an echo app named
    "<service>-<index>" on `app_port` when given."""
    instance, outbound, app_ip = f"{net}.1.{index}", f"{net}.2.{index}", f"{net}.3.{index}"
    if callable(app):  # builds the application from its address: app(name, host, port)
        started = app(f"{service}-{index}", app_ip, app_port)
        stack.callback(started.stop)
        app = None
    elif app_port is not None:
        app = EchoBackend(f"{service}-{index}", port=app_port, http2=http2, host=app_ip)
        stack.enter_context(app)
    bootstrap = sidecar_bootstrap(f"{service}-{index}", service, control_plane.port,
                                  namespace=namespace, instance_ip=instance,
                                  outbound_ip=outbound, app_ip=app_ip, delta=delta)
    kind = Envoy if flavour == "envoy" else Pointsman
    proxy = kind(bootstrap, name=f"{flavour}-{service}-{index}")
    stack.enter_context(proxy)
    return Member(service, proxy, instance, outbound, app)


def start_gateway(stack: ExitStack, flavour: str, control_plane: MeshControlPlane, name: str,
                  *, namespace: str = "default") -> AdminProxy:
    bootstrap = sidecar_bootstrap(f"{name}-gw", name, control_plane.port, namespace=namespace,
                                  kind="Gateway")
    kind = Envoy if flavour == "envoy" else Pointsman
    proxy = kind(bootstrap, name=f"{flavour}-gateway-{name}")
    stack.enter_context(proxy)
    return proxy


def request(address: tuple[str, int], path: str = "/", *, host: str,
            headers: dict[str, str] | None = None, method: str = "GET",
            timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        connection.request(method, path, headers={"host": host, **(headers or {})})
        response = connection.getresponse()
        body = response.read()
        return response.status, {key.lower(): value for key, value in response.getheaders()}, \
            body
    finally:
        connection.close()


def backend_of(body: bytes) -> str:
    """The echo app that answered (tests.support.http_backends), or ''."""
    try:
        return str(json.loads(body).get("backend", ""))
    except ValueError:
        return ""


@contextmanager
def mesh_files(tmp: Path, text: str) -> Iterator[Path]:
    path = tmp / "mesh.yaml"
    path.write_text(text)
    yield path


def write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(text)
    partial.replace(path)
