"""xDS over mTLS off loopback, with real processes (docs/mesh-security.md, "The xDS trust
model"): the control plane runs in a network namespace of the test's own and listens with
`--tls` on the namespace's veth address (not loopback from its view), so xDS requires a client
certificate from the mesh CA. On this host, `pointsman sidecar --join-token --xds-ca` trades
its token for a certificate on `--ca-listen` (a CSR: its key never leaves it), speaks ADS over
mTLS with it and renews it at half life without dropping the stream. Each attack fails: xDS
without a client certificate, with one from another CA, with an expired one, with service A's
certificate for a node claiming B (PERMISSION_DENIED, counted); a revoked token gets no
certificate; a CSR for another identity than the token's is PERMISSION_DENIED. On loopback
`--tls` stays server TLS and the token decides, as before."""

from __future__ import annotations

import datetime
import time
from contextlib import ExitStack
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from controlplane.ca import CertificateAuthority
from proxy.deploy import certificate
from tests.support.xds_mtls import Sidecar, channel_credentials, now, start_mesh

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"


def xds_first_response(target: str, credentials: grpc.ChannelCredentials, service: str,
                       token: str = "") -> discovery_pb2.DiscoveryResponse:
    """Open ADS as a node of `service` and read the first response (raises grpc.RpcError)."""
    request = discovery_pb2.DiscoveryRequest(type_url=LISTENER)
    request.node.id, request.node.cluster = f"{service}-probe", service
    request.node.metadata.update({"namespace": "default", "instance_ip": "127.0.0.2"})
    with grpc.secure_channel(target, credentials) as channel:
        stream = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(
            iter([request]), timeout=10,
            metadata=(("x-pointsman-join-token", token),) if token else None)
        return next(stream)


def svid_pair(authority: CertificateAuthority, service: str,
              at: datetime.datetime | None = None) -> tuple[bytes, bytes]:
    svid = authority.issue("default", service, at or now())
    return svid.certificate_chain, svid.private_key


def test_sidecar_gets_its_certificate_and_speaks_xds_over_mtls(tmp_path: Path) -> None:
    with ExitStack() as stack:
        control_plane = start_mesh(stack, tmp_path, "--cert-lifetime", "20s")
        sidecar = Sidecar(control_plane, tmp_path, "beta", control_plane.token("beta"))
        stack.enter_context(sidecar)
        sidecar.wait_until(lambda: sidecar.admin("/ready")[0] == 200, 60, "ready")
        assert sidecar.secrets() == {"default", "ROOTCA"}  # its SVID, over the mTLS stream
        cert, key = sidecar.xds_certificate_files()
        assert key.stat().st_mode & 0o777 == 0o600 and cert.stat().st_mode & 0o777 == 0o600
        assert key.parent.stat().st_mode & 0o777 == 0o700
        first = cert.read_bytes()
        expires = x509.load_pem_x509_certificate(first).not_valid_after_utc
        assert "certificate_issued" in control_plane.output()
        # Renewed at half life (10 s) over mTLS, the stream kept (one connect, never dropped).
        sidecar.wait_until(lambda: cert.read_bytes() != first, 40, "renewing its certificate")
        assert "xDS client certificate renewed" in sidecar.output()
        assert sidecar.output().count("connected to the control plane") == 1
        assert "disconnected" not in sidecar.output()
        # Once the first certificate has expired, a new connection must use the renewed one:
        # a control plane restarted on the same store and ports admits the sidecar again.
        time.sleep(max(0.0, (expires - now()).total_seconds() + 1))
        control_plane.stop()
        again = control_plane.restarted()
        stack.enter_context(again)
        again.wait_ready()
        sidecar.wait_until(
            lambda: sidecar.output().count("connected to the control plane") == 2, 60,
            "reconnecting with its renewed certificate")
        assert "node_refused" not in again.output()


def test_xds_refuses_clients_without_a_valid_mesh_certificate(tmp_path: Path) -> None:
    with ExitStack() as stack:
        control_plane = start_mesh(stack, tmp_path)
        authority = control_plane.authority()
        root = authority.trust_bundle
        # The control plane's own mTLS certificate works: a node that is its identity.
        assert xds_first_response(control_plane.xds,
                                  channel_credentials(root, svid_pair(authority, "beta")),
                                  "beta").type_url == LISTENER
        other = CertificateAuthority.create_root(now())
        expired_ca = CertificateAuthority(authority.certificate, authority.key,
                                          lifetime=datetime.timedelta(seconds=2))
        for what, client in (
                ("no client certificate", None),
                ("a certificate from another CA", svid_pair(other, "beta")),
                ("an expired certificate",
                 svid_pair(expired_ca, "beta", now() - datetime.timedelta(hours=1)))):
            with pytest.raises(grpc.RpcError) as refused:
                xds_first_response(control_plane.xds, channel_credentials(root, client), "beta")
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, what  # handshake
        # A valid certificate of alpha used by a node claiming beta.
        with pytest.raises(grpc.RpcError) as refused:
            xds_first_response(control_plane.xds,
                               channel_credentials(root, svid_pair(authority, "alpha")), "beta")
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "client certificate is default/alpha's" in refused.value.details()
        assert 'pointsman_xds_refused_total{reason="identity"} 1' in control_plane.metrics()
        assert "node_refused" in control_plane.output()


def test_certificate_service_refuses_wrong_tokens_and_identities(tmp_path: Path) -> None:
    with ExitStack() as stack:
        control_plane = start_mesh(stack, tmp_path)
        authority = control_plane.authority()
        bootstrap = certificate.Endpoint(control_plane.ca_server, authority.trust_bundle)
        beta_token = control_plane.token("beta")
        # The token's own identity is signed, for the requested key.
        beta = certificate.new_request("spiffe://cluster.local/ns/default/sa/beta")
        chain = certificate.request_certificate(bootstrap, beta, token=beta_token)
        issued = certificate.Issued.from_chain(chain, beta, now())
        assert issued.not_after > now()
        # A CSR for another identity than the token's.
        alpha = certificate.new_request("spiffe://cluster.local/ns/default/sa/alpha")
        with pytest.raises(certificate.CertificateError, match="PERMISSION_DENIED"):
            certificate.request_certificate(bootstrap, alpha, token=beta_token)
        # No token; then a revoked one.
        with pytest.raises(certificate.CertificateError, match="UNAUTHENTICATED"):
            certificate.request_certificate(bootstrap, beta)
        listed = control_plane.cli("token", "list").stdout
        token_id = next(line.split()[0] for line in listed.splitlines() if line.endswith("beta"))
        assert control_plane.cli("token", "revoke", token_id).returncode == 0
        with pytest.raises(certificate.CertificateError,
                           match="UNAUTHENTICATED: unknown or revoked join token"):
            certificate.request_certificate(bootstrap, beta, token=beta_token)
        # Renewal over mTLS on the xDS port: beta's certificate renews beta, not alpha.
        xds = certificate.Endpoint(control_plane.xds, authority.trust_bundle)
        client = (issued.chain_pem, issued.key_pem)
        again = certificate.new_request(beta.spiffe_id)
        renewed = certificate.request_certificate(xds, again, client=client)
        assert certificate.Issued.from_chain(renewed, again, now()).not_after >= issued.not_after
        with pytest.raises(certificate.CertificateError, match="PERMISSION_DENIED"):
            certificate.request_certificate(xds, alpha, client=client)
        metrics = control_plane.metrics()
        assert 'pointsman_certificates_total{result="denied"} 2' in metrics
        assert 'pointsman_certificates_total{result="unauthenticated"} 2' in metrics


def test_on_loopback_xds_stays_server_tls_and_the_csr_flow_works(tmp_path: Path) -> None:
    """`--tls` on loopback: no client certificate is asked for (today's behaviour: the join
    token on the stream decides); the sidecar's CSR goes to the xDS port itself."""
    with ExitStack() as stack:
        control_plane = start_mesh(stack, tmp_path, loopback=True)
        token = control_plane.token("beta")
        root = control_plane.authority().trust_bundle
        assert xds_first_response(control_plane.xds, channel_credentials(root, None), "beta",
                                  token).type_url == LISTENER
        with pytest.raises(grpc.RpcError) as refused:  # the token still decides
            xds_first_response(control_plane.xds, channel_credentials(root, None), "alpha",
                               token)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        sidecar = Sidecar(control_plane, tmp_path, "beta", token, ca_server=False)
        stack.enter_context(sidecar)
        sidecar.wait_until(lambda: sidecar.admin("/ready")[0] == 200, 60, "ready")
        assert sidecar.secrets() == {"default", "ROOTCA"}
        assert "certificate_issued" in control_plane.output()
