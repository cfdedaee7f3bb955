"""Real Envoy as a sidecar getting its xDS over mTLS (docs/security.md, "xDS over mTLS"):
`pointsman sidecar --proxy envoy --join-token F --xds-ca ROOT` trades the token for a
certificate (a CSR; the key stays in a 0600 file), writes the files Envoy's bootstrap `xds`
cluster presents (UpstreamTlsContext `tls_certificates`), and Envoy, against a control plane
that requires client certificates off loopback, gets its SVID over that stream. An Envoy given
(`--xds-cert/--xds-key`) a valid certificate of alpha while claiming beta is refused
(PERMISSION_DENIED), and one trusting the mesh root but presenting no certificate never
connects."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from tests.support.envoy import envoy_binary
from tests.support.xds_mtls import Sidecar, now, start_mesh


def test_envoy_sidecar_speaks_xds_over_mtls_with_a_certificate_from_a_csr(
        tmp_path: Path) -> None:
    assert envoy_binary()
    with ExitStack() as stack:
        control_plane = start_mesh(stack, tmp_path)
        authority = control_plane.authority()
        envoy = Sidecar(control_plane, tmp_path, "beta", control_plane.token("beta"),
                        proxy="envoy", name="envoy-beta")
        stack.enter_context(envoy)
        svid = authority.issue("default", "alpha", now())
        (tmp_path / "alpha.pem").write_bytes(svid.certificate_chain)
        (tmp_path / "alpha.key").write_bytes(svid.private_key)
        (tmp_path / "alpha.key").chmod(0o600)
        thief = Sidecar(control_plane, tmp_path, "beta", proxy="envoy", name="envoy-thief",
                        provisioned=(tmp_path / "alpha.pem", tmp_path / "alpha.key"))
        stack.enter_context(thief)

        envoy.wait_until(lambda: envoy.admin("/ready")[0] == 200, 60, "ready")
        assert envoy.secrets() == {"default", "ROOTCA"}
        assert envoy.stat("control_plane.connected_state") == 1
        cert, key = envoy.xds_certificate_files()
        assert key.stat().st_mode & 0o777 == 0o600
        assert b"PRIVATE KEY" in key.read_bytes() and b"CERTIFICATE" in cert.read_bytes()
        assert "spiffe://cluster.local/ns/default/sa/beta" in control_plane.output()

        control_plane.wait_until(
            lambda: "client certificate is default/alpha's" in control_plane.output(), 30,
            "refusing alpha's certificate for a node claiming beta")
        thief.wait_until(lambda: thief.admin("/ready")[0] > 0, 30, "serving its admin")
        assert thief.secrets() == set()
        assert thief.stat("control_plane.connected_state") == 0
        assert 'pointsman_xds_refused_total{reason="identity"}' in control_plane.metrics()
