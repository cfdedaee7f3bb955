"""xDS over mTLS for tests (docs/security.md): a control plane with the mesh API, `--tls` and
`--require-join-token` on this host's non-loopback address (so xDS requires client
certificates), and `pointsman sidecar` processes that trade a join token for their certificate.

The non-loopback address is the host's own (its default route's), as `pointsman sidecar`
finds it; a machine without one skips these tests.
"""

from __future__ import annotations

import datetime
import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import pytest

from controlplane.ca import CertificateAuthority
from tests.support.meshapi import pointsman
from tests.support.ports import free_port, wait_for_port
from tests.support.processes import ManagedProcess, http_get, python_argv

MESH = """
apiVersion: v1
kind: Service
metadata: {name: alpha}
spec: {ports: [{name: http, port: 8080, appProtocol: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: beta}
spec: {ports: [{name: http, port: 8080, appProtocol: http}]}
"""


def outside_address() -> str:
    from proxy.deploy.sidecar import host_address

    address = host_address()
    if address.startswith("127."):
        pytest.skip("no non-loopback address on this machine")
    return address


class MtlsControlPlane(ManagedProcess):
    """`python -m controlplane --store file:STATE --tls` with xDS and the certificate service
    on `host` (not loopback), the management API and admin on loopback."""

    def __init__(self, state: Path, host: str, *extra: str, ports: tuple[int, ...] = ()
                 ) -> None:
        self.host = host
        self.state = state
        self.port, self.ca_port, self.api_port, self.admin_port = ports or tuple(
            free_port() for _ in range(4))
        self.extra = extra
        super().__init__(python_argv(
            "-m", "controlplane", "--store", f"file:{state}", "--tls", "--tls-name", host,
            "--listen", f"{host}:{self.port}", "--ca-listen", f"{host}:{self.ca_port}",
            "--api", f"127.0.0.1:{self.api_port}", "--admin", f"127.0.0.1:{self.admin_port}",
            "--require-join-token", *extra), name="mtls-cp")

    @property
    def api(self) -> str:
        return f"127.0.0.1:{self.api_port}"

    @property
    def xds(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ca_server(self) -> str:
        return f"{self.host}:{self.ca_port}"

    def restarted(self) -> MtlsControlPlane:
        return MtlsControlPlane(self.state, self.host, *self.extra,
                                ports=(self.port, self.ca_port, self.api_port, self.admin_port))

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.wait_until(lambda: http_get(f"http://127.0.0.1:{self.admin_port}/ready")[0] == 200,
                        timeout, "ready")
        wait_for_port(self.port, host=self.host)
        wait_for_port(self.api_port)

    def metrics(self) -> str:
        return http_get(f"http://127.0.0.1:{self.admin_port}/metrics")[1]

    def authority(self) -> CertificateAuthority:
        """The mesh CA (the root the store made at the first start)."""
        certificate, marker, key = (self.state / "secrets" / "ca-root").read_bytes().partition(
            b"-----BEGIN PRIVATE KEY-----")
        return CertificateAuthority.from_pem(certificate, marker + key)

    def token(self, service: str) -> str:
        created = pointsman("token", "create", "--service", service, server=self.api)
        assert created.returncode == 0, created.stderr
        return created.stdout.strip()


def start_mesh(stack: ExitStack, folder: Path, *extra: str, host: str = "") -> MtlsControlPlane:
    control_plane = MtlsControlPlane(folder / "state", host or outside_address(), *extra)
    stack.enter_context(control_plane)
    control_plane.wait_ready()
    (folder / "mesh.yaml").write_text(MESH)
    applied = pointsman("apply", "-f", str(folder / "mesh.yaml"), server=control_plane.api)
    assert applied.returncode == 0, applied.stderr
    (folder / "root.pem").write_bytes(control_plane.authority().trust_bundle)
    return control_plane


class Sidecar(ManagedProcess):
    """`python -m proxy.deploy sidecar --service S --join-token F --xds-ca ROOT`, or with
    `provisioned` (chain, key files) `--xds-cert/--xds-key` instead of the token."""

    def __init__(self, control_plane: MtlsControlPlane, folder: Path, service: str,
                 token: str = "", *, proxy: str = "pointsman", name: str = "",
                 provisioned: tuple[Path, Path] | None = None,
                 ca_server: bool = True) -> None:
        self.admin_port = free_port()
        self.inbound_ip = "127.0.0.2"
        proof: list[str] = []
        if token:
            token_file = folder / f"{name or service}.token"
            token_file.write_text(token)
            proof = ["--join-token", str(token_file)]
            proof += ["--ca-server", control_plane.ca_server] if ca_server else []
        if provisioned is not None:
            proof += ["--xds-cert", str(provisioned[0]), "--xds-key", str(provisioned[1])]
        super().__init__(python_argv(
            "-m", "proxy.deploy", "sidecar", "--service", service, "--proxy", proxy,
            "--server", control_plane.xds, *proof, "--xds-ca", str(folder / "root.pem"),
            "--instance-ip", self.inbound_ip, "--outbound-ip", "127.0.0.3",
            "--node-id", f"{name or service}-node",
            "--admin", f"127.0.0.1:{self.admin_port}", "--log-level", "info"),
            name=f"sidecar-{name or service}")

    def stat(self, name: str) -> int:
        """One stat's value from `/stats` (0 when absent, as Envoy omits it)."""
        for line in self.admin(f"/stats?filter=^{name}$")[1].splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        return 0

    def admin(self, path: str) -> tuple[int, str]:
        return http_get(f"http://127.0.0.1:{self.admin_port}{path}")

    def config_dump(self) -> dict[str, Any]:
        return dict(json.loads(self.admin("/config_dump")[1]))

    def xds_certificate_files(self) -> tuple[Path, Path]:
        """The files the bootstrap's `xds` cluster presents (tls_certificates); /config_dump
        redacts the key's DataSource (as Envoy does): the key is beside the chain."""
        certificate = self.xds_tls()["tls_certificates"][0]
        assert certificate["private_key"] == {"filename": "[redacted]"}, certificate
        chain = Path(certificate["certificate_chain"]["filename"])
        return chain, chain.parent / "xds-key.pem"

    def xds_tls(self) -> dict[str, Any]:
        """The bootstrap's `xds` cluster's common_tls_context, as /config_dump shows it."""
        bootstrap = self.config_dump()["configs"][0]["bootstrap"]
        cluster = bootstrap["static_resources"]["clusters"][0]
        return dict(cluster["transport_socket"]["typed_config"]["common_tls_context"])

    def secrets(self) -> set[str]:
        found = next(item for item in self.config_dump()["configs"]
                     if item["@type"].endswith("SecretsConfigDump"))
        return {item["name"] for item in found.get("dynamic_active_secrets", [])}


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def channel_credentials(root: bytes, client: tuple[bytes, bytes] | None
                        ) -> grpc.ChannelCredentials:
    """Trusting `root`, presenting `client` (chain, key) if given."""
    return grpc.ssl_channel_credentials(root_certificates=root,
                                        certificate_chain=client[0] if client else None,
                                        private_key=client[1] if client else None)
