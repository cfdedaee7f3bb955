"""xDS over mTLS for tests (docs/mesh-security.md, "The xDS trust model"): a control plane
with the mesh API, `--tls` and `--require-join-token` in a network namespace of the test's own
(tests/support/netns.py), listening on the namespace's end of its veth pair, an address that is
not loopback from its own view (so xDS requires client certificates); and `pointsman sidecar`
processes on this host that trade a join token for their certificate and reach the control
plane at that address. Traffic goes only to loopback or into the test's namespace.

In the namespace the management API stays on loopback (off loopback it needs `--client-ca` or
a token over TLS, which `--tls` does not give it: controlplane/api/runtime.py), so the
`pointsman` verbs run inside the namespace too (`ip netns exec`); the admin endpoint, which has
no such rule, listens on the namespace's address for the test to read /ready and /metrics.
"""

from __future__ import annotations

import datetime
import json
import subprocess
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc

from controlplane.ca import CertificateAuthority
from tests.support.meshapi import pointsman
from tests.support.netns import NetworkNamespace
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


class MtlsControlPlane(ManagedProcess):
    """`python -m controlplane --store file:STATE --tls --require-join-token` run inside
    `namespace`: xDS, the certificate service and the admin on its address, the management
    API on its loopback. Without a namespace, everything on this host's loopback (where xDS
    stays server TLS)."""

    def __init__(self, state: Path, namespace: NetworkNamespace | None, *extra: str,
                 ports: tuple[int, ...] = ()) -> None:
        self.namespace = namespace
        self.host = namespace.address if namespace is not None else "127.0.0.1"
        self.state = state
        self.port, self.ca_port, self.api_port, self.admin_port = ports or tuple(
            free_port() for _ in range(4))
        self.extra = extra
        argv = python_argv(
            "-m", "controlplane", "--store", f"file:{state}", "--tls", "--tls-name", self.host,
            "--listen", self.xds, "--ca-listen", self.ca_server, "--api", self.api,
            "--admin", f"{self.host}:{self.admin_port}", "--require-join-token", *extra)
        super().__init__(namespace.argv(argv) if namespace is not None else argv,
                         name="mtls-cp")
        if namespace is not None:
            namespace.adopt(self)

    @property
    def api(self) -> str:
        """On loopback: this host's, or the namespace's (reached by `cli` only)."""
        return f"127.0.0.1:{self.api_port}"

    @property
    def xds(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ca_server(self) -> str:
        return f"{self.host}:{self.ca_port}"

    def restarted(self) -> MtlsControlPlane:
        return MtlsControlPlane(self.state, self.namespace, *self.extra,
                                ports=(self.port, self.ca_port, self.api_port, self.admin_port))

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Ready on the admin (which answers only once the management API serves too:
        controlplane/main.py starts it first), and the xDS port accepts."""
        self.wait_until(lambda: self.admin("/ready")[0] == 200, timeout, "ready")
        wait_for_port(self.port, host=self.host)

    def admin(self, path: str) -> tuple[int, str]:
        return http_get(f"http://{self.host}:{self.admin_port}{path}")

    def metrics(self) -> str:
        return self.admin("/metrics")[1]

    def authority(self) -> CertificateAuthority:
        """The mesh CA (the root the store made at the first start)."""
        certificate, marker, key = (self.state / "secrets" / "ca-root").read_bytes().partition(
            b"-----BEGIN PRIVATE KEY-----")
        return CertificateAuthority.from_pem(certificate, marker + key)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`pointsman ARGS` against the management API, run where it listens."""
        inside = self.namespace.argv([]) if self.namespace is not None else []
        return pointsman(*args, server=self.api, prefix=inside)

    def token(self, service: str) -> str:
        created = self.cli("token", "create", "--service", service)
        assert created.returncode == 0, created.stderr
        return created.stdout.strip()


def start_mesh(stack: ExitStack, folder: Path, *extra: str, loopback: bool = False
               ) -> MtlsControlPlane:
    """The control plane in a network namespace of its own (torn down with `stack`), or on
    this host's loopback, with the Services alpha and beta applied and the mesh's root in
    FOLDER/root.pem."""
    namespace = None if loopback else stack.enter_context(NetworkNamespace.create())
    control_plane = MtlsControlPlane(folder / "state", namespace, *extra)
    stack.enter_context(control_plane)
    control_plane.wait_ready()
    (folder / "mesh.yaml").write_text(MESH)
    applied = control_plane.cli("apply", "-f", str(folder / "mesh.yaml"))
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
