"""The sidecar's xDS client certificate (proxy/deploy/certificate.py) and how `pointsman
sidecar` puts it in the bootstrap, without sockets."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from controlplane.ca import CertificateAuthority
from controlplane.ca.csr import sign_request
from proxy.deploy.bootstrap import SidecarSpec, build_bootstrap
from proxy.deploy.certificate import CertificateError, Issued, new_request, write_files
from proxy.deploy.sidecar import parse_args, spec_from_args, wants_certificate

NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)
BETA = "spiffe://cluster.local/ns/default/sa/beta"


def signed(request_for: str, identity: tuple[str, str] = ("default", "beta")) -> tuple[
        list[str], object]:
    ca = CertificateAuthority.create_root(NOW, lifetime=datetime.timedelta(hours=2))
    request = new_request(request_for)
    return list(sign_request(ca, request.csr_pem, identity, NOW).chain), request


def test_the_answer_is_checked_and_renewed_at_half_life() -> None:
    chain, request = signed(BETA)
    issued = Issued.from_chain(chain, request, NOW)  # type: ignore[arg-type]
    assert issued.not_after == NOW + datetime.timedelta(hours=2)
    assert issued.renew_at == NOW + datetime.timedelta(hours=1)
    assert issued.chain_pem.count(b"BEGIN CERTIFICATE") == 1  # the root is left out
    assert "key_pem" not in repr(issued)


def test_an_answer_for_another_key_or_identity_is_refused() -> None:
    chain, _ = signed(BETA)
    with pytest.raises(CertificateError, match="not for the requested key"):
        Issued.from_chain(chain, new_request(BETA), NOW)
    with pytest.raises(CertificateError, match="no certificate"):
        Issued.from_chain([], new_request(BETA), NOW)


def test_files_are_private_and_replaced_whole(tmp_path: Path) -> None:
    chain, request = signed(BETA)
    issued = Issued.from_chain(chain, request, NOW)  # type: ignore[arg-type]
    cert, key = write_files(tmp_path / "xds", issued)
    assert (tmp_path / "xds").stat().st_mode & 0o777 == 0o700
    assert cert.stat().st_mode & 0o777 == 0o600 and key.stat().st_mode & 0o777 == 0o600
    assert key.read_bytes() == issued.key_pem
    again, request = signed(BETA)
    renewed = Issued.from_chain(again, request, NOW)  # type: ignore[arg-type]
    assert write_files(tmp_path / "xds", renewed) == (cert, key)
    assert cert.read_bytes() == renewed.chain_pem
    assert sorted(path.name for path in (tmp_path / "xds").iterdir()) == [
        "xds-cert.pem", "xds-key.pem"]


def spec(**tls: str) -> SidecarSpec:
    return SidecarSpec(service="beta", namespace="default", node_id="beta-1",
                       servers=(("10.0.0.5", 18000),), admin=("127.0.0.1", 15000),
                       instance_ip="10.0.0.9", **tls)


def test_the_bootstraps_xds_cluster_presents_the_certificate_files() -> None:
    cluster = build_bootstrap(spec(xds_ca="/r.pem", xds_cert="/c.pem", xds_key="/k.pem"))[
        "static_resources"]["clusters"][0]
    common = cluster["transport_socket"]["typed_config"]["common_tls_context"]
    assert common == {"validation_context": {"trusted_ca": {"filename": "/r.pem"}},
                      "tls_certificates": [{"certificate_chain": {"filename": "/c.pem"},
                                            "private_key": {"filename": "/k.pem"}}]}
    plain = build_bootstrap(spec(xds_ca="/r.pem"))["static_resources"]["clusters"][0]
    assert "tls_certificates" not in plain["transport_socket"]["typed_config"][
        "common_tls_context"]


def test_sidecar_flags(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("token")
    for name in ("c.pem", "k.pem", "r.pem"):
        (tmp_path / name).write_text("x")
    base = ["--service", "beta", "--instance-ip", "10.0.0.9", "--join-token",
            str(tmp_path / "t")]
    assert wants_certificate(parse_args([*base, "--xds-ca", str(tmp_path / "r.pem")]))
    assert not wants_certificate(parse_args(base))  # no root: plaintext xDS, as before
    provisioned = parse_args([*base, "--xds-ca", str(tmp_path / "r.pem"), "--xds-cert",
                              str(tmp_path / "c.pem"), "--xds-key", str(tmp_path / "k.pem")])
    assert not wants_certificate(provisioned)
    assert spec_from_args(provisioned).xds_cert == str(tmp_path / "c.pem")
    for argv, message in (
            ([*base, "--xds-cert", str(tmp_path / "c.pem")], "go together"),
            ([*base, "--xds-cert", str(tmp_path / "c.pem"), "--xds-key",
              str(tmp_path / "k.pem")], "needs --xds-ca"),
            ([*base, "--xds-ca", "r", "--xds-cert", str(tmp_path / "none"), "--xds-key",
              str(tmp_path / "k.pem")], "--xds-cert: .*no such file")):
        with pytest.raises(ValueError, match=message):
            spec_from_args(parse_args(argv))


def test_a_starting_sidecar_waits_for_an_unreachable_control_plane_not_a_refusal() -> None:
    from proxy.deploy.certificate import Endpoint, first_certificate

    clock = [0.0]
    answers: list[object] = [CertificateError("UNAVAILABLE", retryable=True),
                             CertificateError("UNAVAILABLE", retryable=True), ["chain"]]

    def ask(_endpoint: object, _request: object, *, token: str) -> list[str]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    where, request = Endpoint("cp:1", b""), new_request(BETA)
    assert first_certificate(where, request, "t", ask=ask, clock=lambda: clock[0],
                             sleep=sleep) == ["chain"]
    assert clock[0] == 2.0
    answers[:] = [CertificateError("PERMISSION_DENIED")]
    with pytest.raises(CertificateError, match="PERMISSION_DENIED"):
        first_certificate(where, request, "t", ask=ask, clock=lambda: clock[0], sleep=sleep)
    answers[:] = [CertificateError("UNAVAILABLE", retryable=True)] * 100
    with pytest.raises(CertificateError, match="UNAVAILABLE"):
        first_certificate(where, request, "t", patience=5, ask=ask, clock=lambda: clock[0],
                          sleep=sleep)


def test_envoys_certificate_is_a_file_based_sds_secret_it_watches(tmp_path: Path) -> None:
    import json

    from proxy.deploy.certificate import write_sds_file

    chain, request = signed(BETA)
    issued = Issued.from_chain(chain, request, NOW)  # type: ignore[arg-type]
    path = write_sds_file(tmp_path / "xds", issued)
    assert path.stat().st_mode & 0o777 == 0o600
    assert [item.name for item in (tmp_path / "xds").iterdir()] == ["xds-client-sds.json"]
    secret = json.loads(path.read_text())["resources"][0]
    assert secret["name"] == "xds-client"
    assert secret["tls_certificate"]["private_key"]["inline_string"].encode() == issued.key_pem
    cluster = build_bootstrap(spec(xds_ca="/r.pem", xds_sds=str(path)))[
        "static_resources"]["clusters"][0]
    common = cluster["transport_socket"]["typed_config"]["common_tls_context"]
    assert common["tls_certificate_sds_secret_configs"] == [{"name": "xds-client", "sds_config": {
        "path_config_source": {"path": str(path),
                               "watched_directory": {"path": str(tmp_path / "xds")}},
        "resource_api_version": "V3"}}]
