"""Real Envoy as a sidecar getting its xDS over mTLS (docs/mesh-security.md, "The xDS trust
model"): `pointsman sidecar --proxy envoy --join-token F --xds-ca ROOT` trades the token for a
certificate (a CSR; the key stays in a 0600 file), hands it to Envoy's bootstrap `xds` cluster
(UpstreamTlsContext `tls_certificate_sds_secret_configs` from a file Envoy watches), and Envoy,
against a control plane that requires client certificates off loopback (in a network namespace
of the test's own, on its veth address: tests/support/xds_mtls.py), gets its SVID over that
stream. At half life the certificate is renewed and Envoy reloads it: after the first one
expired, a restarted control plane admits Envoy's reconnection. An Envoy given
(`--xds-cert/--xds-key`) a valid certificate of alpha while claiming beta is refused
(PERMISSION_DENIED, counted)."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path

from cryptography import x509

from tests.support.envoy import envoy_binary
from tests.support.xds_mtls import Sidecar, now, start_mesh


def test_envoy_sidecar_speaks_xds_over_mtls_with_a_certificate_from_a_csr(
        tmp_path: Path) -> None:
    assert envoy_binary()
    with ExitStack() as stack:
        control_plane = start_mesh(stack, tmp_path, "--cert-lifetime", "20s")
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
        # its SVID over the mTLS stream, beside the file-based xds-client secret
        assert envoy.secrets() == {"default", "ROOTCA", "xds-client"}
        assert envoy.stat("control_plane.connected_state") == 1
        source = envoy.xds_tls()["tls_certificate_sds_secret_configs"][0]["sds_config"]
        sds = Path(source["path_config_source"]["path"])
        assert sds.stat().st_mode & 0o777 == 0o600 and sds.parent.stat().st_mode & 0o777 == 0o700
        first = certificate_of(sds)
        assert "spiffe://cluster.local/ns/default/sa/beta" in control_plane.output()

        control_plane.wait_until(
            lambda: "client certificate is default/alpha's" in control_plane.output(), 30,
            "refusing alpha's certificate for a node claiming beta")
        thief.wait_until(lambda: thief.admin("/ready")[0] > 0, 30, "serving its admin")
        assert thief.secrets() == set()
        assert thief.stat("control_plane.connected_state") == 0
        assert 'pointsman_xds_refused_total{reason="identity"}' in control_plane.metrics()
        thief.stop()

        # Renewed at half life (10 s): Envoy reloads the file; its stream is kept.
        envoy.wait_until(lambda: certificate_of(sds) != first, 40, "renewing its certificate")
        assert envoy.stat("control_plane.connected_state") == 1
        time.sleep(max(0.0, (first.not_valid_after_utc - now()).total_seconds() + 1))
        control_plane.stop()
        envoy.wait_until(lambda: envoy.stat("control_plane.connected_state") == 0, 30,
                         "losing the control plane")
        again = control_plane.restarted()
        stack.enter_context(again)
        again.wait_ready()
        envoy.wait_until(lambda: envoy.stat("control_plane.connected_state") == 1, 60,
                         "reconnecting with its renewed certificate")
        assert "node_refused" not in again.output()


def certificate_of(sds_file: Path) -> x509.Certificate:
    secret = json.loads(sds_file.read_text())["resources"][0]
    return x509.load_pem_x509_certificate(
        secret["tls_certificate"]["certificate_chain"]["inline_string"].encode())
