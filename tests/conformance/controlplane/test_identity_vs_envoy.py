"""Real Envoy gets its SVIDs over SDS (ADS, and the SecretDiscoveryService) from our control
plane, and Envoy and Pointsman
sidecars talk mTLS to each other both ways, each checking the other's SPIFFE ID with
match_typed_subject_alt_names (Envoy validating our SVIDs); the attacks Envoy refuses (no
client certificate, another CA, an expired certificate) Pointsman refuses too; /config_dump
redacts the private key the same way; rotation (6 s SVIDs) keeps both working."""

from __future__ import annotations

import copy
import datetime
import http.client
import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from controlplane.ca import CertificateAuthority, spiffe_id
from tests.support.envoy import Envoy
from tests.support.identity import (
    MESH,
    client_context,
    handshake_refused,
    https_get,
    now,
    peer_serial,
    sds_sidecar_bootstrap,
    write_ca,
)
from tests.support.mesh import MeshControlPlane
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port
from tests.support.proxies import AdminProxy

LIFETIME = 6


class MixedMesh:
    """Envoy is alpha, Pointsman is beta: alpha -> beta and beta -> alpha over mTLS."""

    def __init__(self, stack: ExitStack, folder: Path) -> None:
        self.folder = folder
        (folder / "mesh.yaml").write_text(MESH)
        self.authority, flags = write_ca(folder)
        self.control_plane = MeshControlPlane(folder / "mesh.yaml", *flags,
                                              "--cert-lifetime", f"{LIFETIME}s")
        stack.enter_context(self.control_plane)
        self.control_plane.wait_ready()
        self.ports = {name: (free_port(), free_port()) for name in ("alpha", "beta")}
        self.alpha: AdminProxy = self.sidecar(stack, Envoy, "alpha", "beta")
        self.beta: AdminProxy = self.sidecar(stack, Pointsman, "beta", "alpha")
        self.alpha.wait_ready()
        self.beta.wait_ready()

    def sidecar(self, stack: ExitStack, kind: Any, service: str, peer: str) -> AdminProxy:
        inbound, outbound = self.ports[service]
        bootstrap = sds_sidecar_bootstrap(
            f"{service}-1", service, self.control_plane.port, address="127.0.0.1",
            inbound_port=inbound, outbound_port=outbound,
            peer=("127.0.0.1", self.ports[peer][0]),
            peer_id=spiffe_id("cluster.local", "default", peer), instance_ip="127.0.0.2",
            # Envoy: the listener's secrets over ADS, the static cluster's over the SDS
            # service (a static cluster's over ADS crash Envoy: envoyproxy/envoy#15517)
            sds_stream="cluster" if kind is Envoy else False)
        proxy = kind(bootstrap, name=f"{kind.__name__.lower()}-{service}")
        stack.enter_context(proxy)
        return proxy  # type: ignore[no-any-return]

    def outbound(self, service: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.ports[service][1], timeout=5)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MixedMesh]:
    with ExitStack() as stack:
        yield MixedMesh(stack, tmp_path_factory.mktemp("mixed"))


def test_envoy_and_pointsman_talk_mtls_both_ways(mesh: MixedMesh) -> None:
    assert mesh.outbound("alpha") == (200, b"beta")  # Envoy -> Pointsman
    assert mesh.outbound("beta") == (200, b"alpha")  # Pointsman -> Envoy
    # Envoy verified our SVID (its handshakes succeeded); both count them alike.
    for proxy in (mesh.alpha, mesh.beta):
        assert proxy.stat("cluster.peer.ssl.handshake") >= 1
        assert proxy.stat("cluster.peer.ssl.fail_verify_san") == 0
        prometheus = proxy.admin("/stats/prometheus")[1]  # the same series name and tags
        assert 'envoy_cluster_ssl_handshake{envoy_cluster_name="peer"}' in prometheus


def test_both_serve_the_control_planes_svids(mesh: MixedMesh) -> None:
    svid = mesh.authority.issue("default", "client", now())
    context = client_context(mesh.authority.trust_bundle, svid, mesh.folder)
    assert https_get(mesh.ports["alpha"][0], context) == (200, b"alpha")
    assert https_get(mesh.ports["beta"][0], context) == (200, b"beta")


@pytest.mark.parametrize("attack", ["no certificate", "another CA", "expired"])
def test_attacks_are_refused_by_both(mesh: MixedMesh, attack: str) -> None:
    if attack == "no certificate":
        svid = None
    elif attack == "another CA":
        svid = CertificateAuthority.create_root(now()).issue("default", "alpha", now())
    else:
        expired = CertificateAuthority(mesh.authority.certificate, mesh.authority.key,
                                       lifetime=datetime.timedelta(hours=1))
        svid = expired.issue("default", "alpha", now() - datetime.timedelta(days=2))
    context = client_context(mesh.authority.trust_bundle, svid, mesh.folder)
    refused = {name: handshake_refused(mesh.ports[name][0], context)
               for name in ("alpha", "beta")}
    assert refused == {"alpha": True, "beta": True}
    stat = ("ssl.fail_verify_no_cert" if svid is None else "ssl.fail_verify_error")
    for name, proxy in (("alpha", mesh.alpha), ("beta", mesh.beta)):  # the same stat
        port = mesh.ports[name][0]
        assert proxy.stat(f"listener.127.0.0.1_{port}.{stat}") >= 1, name
        assert proxy.stat(f"listener.127.0.0.1_{port}.ssl.handshake") >= 1, name


def secrets_dump(proxy: AdminProxy) -> dict[str, Any]:
    _status, body = proxy.admin("/config_dump")
    assert "PRIVATE KEY" not in body
    dump = json.loads(body)
    found = next(item for item in dump["configs"] if item["@type"].endswith(
        "SecretsConfigDump"))
    return {item["name"]: item["secret"] for item in found.get("dynamic_active_secrets", [])}


def test_private_keys_are_redacted_as_envoy_redacts_them(mesh: MixedMesh) -> None:
    ours, envoys = secrets_dump(mesh.beta), secrets_dump(mesh.alpha)
    assert set(ours) == set(envoys) == {"default", "ROOTCA"}
    key = "private_key"
    assert ours["default"]["tls_certificate"][key] == envoys["default"]["tls_certificate"][key]
    assert envoys["ROOTCA"]["validation_context"]["trusted_ca"] == \
        ours["ROOTCA"]["validation_context"]["trusted_ca"]


def test_rotation_keeps_both_working(mesh: MixedMesh) -> None:
    svid = mesh.authority.issue("default", "client", now())
    first = {name: peer_serial(mesh.ports[name][0], mesh.authority.trust_bundle, mesh.folder,
                               svid) for name in ("alpha", "beta")}
    deadline = time.monotonic() + 4 * LIFETIME
    current = dict(first)
    while any(current[name] == first[name] for name in first) and time.monotonic() < deadline:
        assert mesh.outbound("alpha") == (200, b"beta")
        assert mesh.outbound("beta") == (200, b"alpha")
        time.sleep(0.3)
        current = {name: peer_serial(mesh.ports[name][0], mesh.authority.trust_bundle,
                                     mesh.folder, svid) for name in ("alpha", "beta")}
    assert all(current[name] != first[name] for name in first), current
    assert mesh.outbound("alpha") == (200, b"beta")
    assert mesh.outbound("beta") == (200, b"alpha")


def test_xds_over_tls_with_the_mesh_cas_certificate(tmp_path: Path) -> None:
    """`--tls`: the control plane serves xDS with a certificate from its own CA; Envoy and
    Pointsman trusting the mesh root get their SVIDs through it; a sidecar trusting another
    root does not."""
    (tmp_path / "mesh.yaml").write_text(MESH)
    authority, flags = write_ca(tmp_path)
    (tmp_path / "root.pem").write_bytes(authority.trust_bundle)
    (tmp_path / "other.pem").write_bytes(CertificateAuthority.create_root(now()).trust_bundle)
    with ExitStack() as stack:
        control_plane = MeshControlPlane(tmp_path / "mesh.yaml", *flags, "--tls")
        stack.enter_context(control_plane)
        control_plane.wait_ready()
        proxies = {}
        for kind, service, root in ((Envoy, "alpha", "root.pem"), (Pointsman, "beta", "root.pem"),
                                    (Pointsman, "gamma", "other.pem")):
            inbound = free_port()
            bootstrap = sds_sidecar_bootstrap(
                f"{service}-tls", "beta" if service == "gamma" else service,
                control_plane.port, address="127.0.0.1", inbound_port=inbound,
                outbound_port=free_port(), peer=("127.0.0.1", 9), peer_id="spiffe://x/y",
                instance_ip="127.0.0.2", xds_ca=str(tmp_path / root),
                sds_stream="cluster" if kind is Envoy else False)
            proxy = kind(bootstrap, name=f"{kind.__name__.lower()}-{service}-tls")
            stack.enter_context(proxy)
            proxies[service] = (proxy, inbound)
        svid = authority.issue("default", "client", now())
        context = client_context(authority.trust_bundle, svid, tmp_path)
        for service in ("alpha", "beta"):
            proxy, inbound = proxies[service]
            proxy.wait_ready()
            assert https_get(inbound, context) == (200, service.encode())
        gamma = proxies["gamma"][0]
        gamma.wait_until(lambda: "CERTIFICATE_VERIFY_FAILED" in gamma.output(), 30,
                         "refusing the control plane's certificate")
        gamma.wait_until(lambda: gamma.admin("/ready")[0] > 0, 30, "serving its admin")
        assert secrets_dump(gamma) == {}  # it never trusted the server, so never connected
        assert gamma.stat("control_plane.connected_state") == 0


def test_envoy_presents_its_join_token_as_grpc_metadata(tmp_path: Path) -> None:
    """Envoy sends `initial_metadata` on its xDS streams: with `--require-join-token`, the
    token naming alpha gets Envoy alpha's SVID; the one naming beta is refused for alpha."""
    from tests.support.meshapi import ApiControlPlane, pointsman

    (tmp_path / "mesh.yaml").write_text(MESH)
    with ExitStack() as stack:
        control_plane = ApiControlPlane(f"file:{tmp_path / 'state'}", "--require-join-token")
        stack.enter_context(control_plane)
        control_plane.wait_ready()
        assert pointsman("apply", "-f", str(tmp_path / "mesh.yaml"),
                         server=control_plane.api).returncode == 0
        tokens = {service: pointsman("token", "create", "--service", service,
                                     server=control_plane.api).stdout.strip()
                  for service in ("alpha", "beta")}
        envoys = {}
        for name, token in (("admitted", tokens["alpha"]), ("refused", tokens["beta"])):
            inbound = free_port()
            bootstrap = copy.deepcopy(sds_sidecar_bootstrap(  # shares SDS_GRPC: copied
                f"alpha-{name}", "alpha", control_plane.port, address="127.0.0.1",
                inbound_port=inbound, outbound_port=free_port(), peer=("127.0.0.1", 9),
                peer_id="spiffe://x/y", instance_ip="127.0.0.2", sds_stream="cluster"))
            for service in _xds_services(bootstrap):
                service["initial_metadata"] = [{"key": "x-pointsman-join-token",
                                                "value": token}]
            envoy = Envoy(bootstrap, name=f"envoy-alpha-{name}")
            stack.enter_context(envoy)
            envoys[name] = (envoy, inbound)
        envoy, inbound = envoys["admitted"]
        envoy.wait_ready()
        root = (tmp_path / "state" / "secrets" / "ca-root").read_bytes()
        certificate, marker, key = root.partition(b"-----BEGIN PRIVATE KEY-----")
        authority = CertificateAuthority.from_pem(certificate, marker + key)
        context = client_context(authority.trust_bundle,
                                 authority.issue("default", "c", now()), tmp_path)
        assert https_get(inbound, context) == (200, b"alpha")
        refused = envoys["refused"][0]
        refused.wait_until(lambda: "names default/beta" in control_plane.output(), 30,
                           "refused by the control plane")
        assert secrets_dump(refused) == {}


def _xds_services(bootstrap: dict[str, Any]) -> list[dict[str, Any]]:
    """Every GrpcService that reaches the control plane: ADS and the SDS api_config_sources."""
    found = list(bootstrap["dynamic_resources"]["ads_config"]["grpc_services"])

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if "api_config_source" in value:
                found.extend(value["api_config_source"]["grpc_services"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
    walk(bootstrap["static_resources"])
    return found
