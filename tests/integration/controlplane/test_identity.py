"""The control plane's CA hands each sidecar its SVID over SDS (ADS), and Pointsman sidecars
then talk mTLS: they serve it inbound and originate it outbound, verifying the peer's SPIFFE
ID. The attacks are refused (no client certificate, a certificate from another CA, an
expired one, the wrong server identity), private keys stay out of /config_dump, and SVIDs
rotate (lifetime 6 s, renewed every 3 s) under open connections."""

from __future__ import annotations

import datetime
import http.client
import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from controlplane.ca import CertificateAuthority, spiffe_id
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

LIFETIME = 6  # seconds: renewed at half life


class Mesh:
    def __init__(self, stack: ExitStack, folder: Path) -> None:
        self.folder = folder
        (folder / "mesh.yaml").write_text(MESH)
        self.authority, flags = write_ca(folder)
        self.control_plane = MeshControlPlane(folder / "mesh.yaml", *flags,
                                              "--cert-lifetime", f"{LIFETIME}s")
        stack.enter_context(self.control_plane)
        self.control_plane.wait_ready()
        self.ports = {name: (free_port(), free_port())
                      for name in ("alpha", "beta", "gamma", "delta", "epsilon")}
        self.alpha = self.sidecar(stack, "alpha", "beta", spiffe_id("cluster.local", "default",
                                                                    "beta"))
        self.beta = self.sidecar(stack, "beta", "alpha", spiffe_id("cluster.local", "default",
                                                                   "alpha"))
        # gamma calls beta but expects alpha's identity there: its calls must fail.
        self.gamma = self.sidecar(stack, "alpha", "beta", spiffe_id("cluster.local", "default",
                                                                    "alpha"), ports="gamma")
        # delta: beta's identity from the SecretDiscoveryService stream (no ADS); epsilon:
        # alpha's over delta ADS.
        self.delta = self.sidecar(stack, "beta", "alpha", spiffe_id("cluster.local", "default",
                                                                    "alpha"), ports="delta",
                                  sds_stream=True)
        self.epsilon = self.sidecar(stack, "alpha", "beta", spiffe_id("cluster.local",
                                                                      "default", "beta"),
                                    ports="epsilon", delta=True)
        for proxy in (self.alpha, self.beta, self.gamma, self.delta, self.epsilon):
            proxy.wait_ready()

    def sidecar(self, stack: ExitStack, service: str, peer: str, peer_id: str, *,
                ports: str = "", sds_stream: bool = False, delta: bool = False) -> Pointsman:
        inbound, outbound = self.ports[ports or service]
        bootstrap = sds_sidecar_bootstrap(
            f"{ports or service}-1", service, self.control_plane.port, address="127.0.0.1",
            inbound_port=inbound, outbound_port=outbound, peer=("127.0.0.1", self.ports[peer][0]),
            peer_id=peer_id, instance_ip="127.0.0.2", sds_stream=sds_stream, delta=delta)
        proxy = Pointsman(bootstrap, name=f"pointsman-{ports or service}")
        stack.enter_context(proxy)
        return proxy

    def client(self, svid_for: str | None = "client") -> object:
        svid = None if svid_for is None else self.authority.issue("default", svid_for, now())
        return client_context(self.authority.trust_bundle, svid, self.folder)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with ExitStack() as stack:
        yield Mesh(stack, tmp_path_factory.mktemp("identity"))


def outbound(mesh: Mesh, name: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", mesh.ports[name][1], timeout=5)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_sidecars_serve_mtls_with_the_svids_of_their_services(mesh: Mesh) -> None:
    status, body = https_get(mesh.ports["beta"][0], mesh.client())  # type: ignore[arg-type]
    assert (status, body) == (200, b"beta")
    # Both ways between sidecars: the caller presents its SVID and checks the server's ID.
    assert outbound(mesh, "alpha") == (200, b"beta")
    assert outbound(mesh, "beta") == (200, b"alpha")


def test_secrets_over_the_sds_service_and_over_delta_ads(mesh: Mesh) -> None:
    status, body = https_get(mesh.ports["delta"][0], mesh.client())  # type: ignore[arg-type]
    assert (status, body) == (200, b"beta")
    assert outbound(mesh, "delta") == (200, b"alpha")  # delta -> alpha, as beta
    assert outbound(mesh, "epsilon") == (200, b"beta")  # epsilon -> beta, as alpha


def test_a_server_with_another_identity_is_refused_by_the_caller(mesh: Mesh) -> None:
    status, _ = outbound(mesh, "gamma")  # gamma expects alpha's SPIFFE ID from beta
    assert status == 503
    assert mesh.gamma.stat("cluster.peer.upstream_cx_connect_fail") >= 1
    assert mesh.gamma.stat("cluster.peer.ssl.fail_verify_san") >= 1  # Envoy's stat


def test_a_client_without_a_certificate_is_refused(mesh: Mesh) -> None:
    assert handshake_refused(mesh.ports["beta"][0], mesh.client(None))  # type: ignore[arg-type]


def test_a_certificate_from_another_ca_is_refused(mesh: Mesh) -> None:
    other = CertificateAuthority.create_root(now())
    svid = other.issue("default", "alpha", now())  # the right name, the wrong issuer
    context = client_context(mesh.authority.trust_bundle, svid, mesh.folder)
    assert handshake_refused(mesh.ports["beta"][0], context)


def test_an_expired_certificate_is_refused(mesh: Mesh) -> None:
    expired = CertificateAuthority(mesh.authority.certificate, mesh.authority.key,
                                   lifetime=datetime.timedelta(hours=1))
    svid = expired.issue("default", "alpha", now() - datetime.timedelta(days=2))
    context = client_context(mesh.authority.trust_bundle, svid, mesh.folder)
    assert handshake_refused(mesh.ports["beta"][0], context)


def test_private_keys_are_redacted_in_config_dump(mesh: Mesh) -> None:
    status, body = mesh.beta.admin("/config_dump")
    assert status == 200
    assert "PRIVATE KEY" not in body
    dump = json.loads(body)
    secrets = next(item for item in dump["configs"] if item["@type"].endswith(
        "SecretsConfigDump"))
    active = {item["name"]: item for item in secrets["dynamic_active_secrets"]}
    assert set(active) == {"default", "ROOTCA"}
    key = active["default"]["secret"]["tls_certificate"]["private_key"]
    assert key == {"inline_bytes": "W3JlZGFjdGVkXQ=="}  # b"[redacted]", as Envoy shows it
    chain = active["default"]["secret"]["tls_certificate"]["certificate_chain"]
    assert chain["inline_bytes"]  # the certificate itself is not secret


def test_svids_rotate_without_dropping_connections(mesh: Mesh) -> None:
    port = mesh.ports["beta"][0]
    svid = mesh.authority.issue("default", "client", now())
    first = peer_serial(port, mesh.authority.trust_bundle, mesh.folder, svid)
    held = http.client.HTTPSConnection(
        "127.0.0.1", port, context=client_context(mesh.authority.trust_bundle, svid,
                                                  mesh.folder), timeout=5)
    try:
        held.request("GET", "/")
        assert held.getresponse().read() == b"beta"
        deadline = time.monotonic() + 4 * LIFETIME
        rotated = first
        while rotated == first and time.monotonic() < deadline:
            assert outbound(mesh, "alpha") == (200, b"beta")  # requests keep working
            time.sleep(0.3)
            rotated = peer_serial(port, mesh.authority.trust_bundle, mesh.folder, svid)
        assert rotated != first, "beta's SVID was not renewed"
        held.request("GET", "/")  # the connection opened before the rotation is still up
        assert held.getresponse().read() == b"beta"
    finally:
        held.close()
    assert outbound(mesh, "beta") == (200, b"alpha")


def test_requests_under_load_lose_nothing_across_rotations(mesh: Mesh) -> None:
    """Four keep-alive clients through alpha -> beta (mTLS) for two renewals of both SVIDs:
    every request answered (new handshakes take the new certificates, open connections keep
    going)."""
    import threading

    port = mesh.ports["beta"][0]
    svid = mesh.authority.issue("default", "client", now())
    before = peer_serial(port, mesh.authority.trust_bundle, mesh.folder, svid)
    stop = time.monotonic() + LIFETIME + 1
    results: list[tuple[int, int]] = []

    def client() -> None:
        ok = failed = 0
        connection = http.client.HTTPConnection("127.0.0.1", mesh.ports["alpha"][1], timeout=5)
        try:
            while time.monotonic() < stop:
                try:
                    connection.request("GET", "/")
                    response = connection.getresponse()
                    body = response.read()
                    ok, failed = (ok + 1, failed) if (response.status, body) == (
                        200, b"beta") else (ok, failed + 1)
                except (OSError, http.client.HTTPException):
                    failed += 1
                    connection.close()
        finally:
            connection.close()
            results.append((ok, failed))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = peer_serial(port, mesh.authority.trust_bundle, mesh.folder, svid)
    assert after != before  # at least one renewal happened meanwhile
    assert sum(failed for _, failed in results) == 0, results
    assert sum(ok for ok, _ in results) > 100, results
    print(f"{sum(ok for ok, _ in results)} requests in {LIFETIME + 1} s across renewals")


def test_delta_secrets_over_the_sds_service(mesh: Mesh) -> None:
    """SecretDiscoveryService/DeltaSecrets (incremental xDS) serves the same secrets."""
    import grpc
    from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
    from envoy.service.discovery.v3 import discovery_pb2
    from envoy.service.secret.v3 import sds_pb2_grpc

    request = discovery_pb2.DeltaDiscoveryRequest(
        type_url="type.googleapis.com/" + secret_pb2.Secret.DESCRIPTOR.full_name,
        resource_names_subscribe=["default", "ROOTCA"])
    request.node.id, request.node.cluster = "beta-delta", "beta"
    request.node.metadata.update({"instance_ip": "127.0.0.2", "outbound_ip": "127.0.0.3"})
    with grpc.insecure_channel(f"127.0.0.1:{mesh.control_plane.port}") as channel:
        stream = sds_pb2_grpc.SecretDiscoveryServiceStub(channel).DeltaSecrets(
            iter([request]), timeout=10)
        response = next(stream)
        stream.cancel()
    names = set()
    for item in response.resources:
        secret = secret_pb2.Secret()
        item.resource.Unpack(secret)
        names.add(secret.name)
        if secret.name == "default":  # beta's SVID
            from cryptography import x509

            leaf = x509.load_pem_x509_certificate(
                secret.tls_certificate.certificate_chain.inline_bytes)
            assert leaf.extensions.get_extension_for_class(
                x509.SubjectAlternativeName).value.get_values_for_type(
                x509.UniformResourceIdentifier) == ["spiffe://cluster.local/ns/default/sa/beta"]
    assert names == {"default", "ROOTCA"}
