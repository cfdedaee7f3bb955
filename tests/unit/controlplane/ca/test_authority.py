"""The mesh CA (controlplane/ca): SVIDs carry the SPIFFE ID as their only URI SAN, chain to
the root (or the operator's intermediate), live `lifetime`, are due at half life; the root is
made once per store; the Secrets have Istio's names."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from controlplane.ca import (
    ROOT_SECRET,
    SVID_SECRET,
    CaError,
    CertificateAuthority,
    IdentitySecrets,
    keeper,
    spiffe_id,
)
from controlplane.store import MemoryStore

NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)


def leaf_of(chain: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificates(chain)[0]


def test_svid_has_the_spiffe_id_as_its_only_uri_san() -> None:
    authority = CertificateAuthority.create_root(NOW, trust_domain="mesh.example")
    svid = authority.issue("shop", "cart", NOW)
    leaf = leaf_of(svid.certificate_chain)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical  # empty subject (RFC 5280 4.2.1.6)
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://mesh.example/ns/shop/sa/cart"]
    assert svid.spiffe_id == spiffe_id("mesh.example", "shop", "cart")
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


def test_svid_lifetime_and_renewal_at_half_life() -> None:
    authority = CertificateAuthority.create_root(NOW, lifetime=24 * HOUR)
    svid = authority.issue("default", "a", NOW)
    leaf = leaf_of(svid.certificate_chain)
    assert leaf.not_valid_after_utc == NOW + 24 * HOUR
    assert leaf.not_valid_before_utc <= NOW
    assert svid.renew_at == NOW + 12 * HOUR


def test_svid_never_outlives_its_issuer() -> None:
    authority = CertificateAuthority.create_root(NOW, lifetime=datetime.timedelta(days=9999))
    svid = authority.issue("default", "a", NOW)
    assert svid.not_after == authority.certificate.not_valid_after_utc


def test_svid_chains_to_the_root_and_its_key_matches() -> None:
    authority = CertificateAuthority.create_root(NOW)
    svid = authority.issue("default", "a", NOW)
    leaf = leaf_of(svid.certificate_chain)
    leaf.verify_directly_issued_by(authority.certificate)
    key = serialization.load_pem_private_key(svid.private_key, None)
    assert key.public_key().public_numbers() == leaf.public_key().public_numbers()  # type: ignore[union-attr]
    # The key is not in its repr (nor in logs that print it).
    assert b"PRIVATE" not in repr(svid).encode() and "private_key" not in repr(svid)


def test_an_intermediate_ca_puts_itself_in_the_chain_and_the_root_in_the_bundle() -> None:
    root = CertificateAuthority.create_root(NOW)
    # An intermediate signed by the root, as an operator would bring it.
    intermediate = CertificateAuthority.create_root(NOW)
    signed = (x509.CertificateBuilder()
              .subject_name(x509.Name.from_rfc4514_string("CN=intermediate"))
              .issuer_name(root.certificate.subject)
              .public_key(intermediate.key.public_key())
              .serial_number(7).not_valid_before(NOW - HOUR).not_valid_after(NOW + 100 * HOUR)
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .sign(root.key, hashes.SHA256()))
    pem = (signed.public_bytes(serialization.Encoding.PEM)
           + root.certificate.public_bytes(serialization.Encoding.PEM))
    operator = CertificateAuthority.from_pem(pem, intermediate.key_pem())
    assert operator.trust_bundle == root.trust_bundle
    svid = operator.issue("default", "a", NOW)
    chain = x509.load_pem_x509_certificates(svid.certificate_chain)
    assert len(chain) == 2 and chain[1] == signed
    chain[0].verify_directly_issued_by(signed)


def test_python_ssl_verifies_an_svid_against_the_bundle(tmp_path: Path) -> None:
    authority = CertificateAuthority.create_root(NOW - HOUR)
    svid = authority.issue("default", "a", datetime.datetime.now(datetime.UTC))
    (tmp_path / "chain.pem").write_bytes(svid.certificate_chain)
    (tmp_path / "key.pem").write_bytes(svid.private_key)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.load_verify_locations(cadata=authority.trust_bundle.decode())
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(incoming, outgoing)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (c, s):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(outgoing.read())
        incoming.write(s_out.read())
    assert c.getpeercert()["subjectAltName"] == (  # type: ignore[index]
        ("URI", "spiffe://cluster.local/ns/default/sa/a"),)


def test_a_key_that_is_not_the_certificates_is_refused() -> None:
    one, other = CertificateAuthority.create_root(NOW), CertificateAuthority.create_root(NOW)
    with pytest.raises(CaError, match="does not match"):
        CertificateAuthority.from_pem(one.certificate_pem(), other.key_pem())


def test_a_leaf_is_not_a_ca() -> None:
    authority = CertificateAuthority.create_root(NOW)
    svid = authority.issue("default", "a", NOW)
    with pytest.raises(CaError, match="not a CA"):
        CertificateAuthority.from_pem(svid.certificate_chain, svid.private_key)


def test_garbage_is_refused_by_name() -> None:
    with pytest.raises(CaError, match="--ca-cert: not PEM"):
        CertificateAuthority.from_pem(b"nope", b"nope", source="--ca-cert")


def test_secrets_have_istios_names_and_are_reissued_when_due() -> None:
    authority = CertificateAuthority.create_root(NOW, lifetime=2 * HOUR)
    secrets = IdentitySecrets(authority)
    first = secrets.secrets_for("shop", "cart", NOW)
    assert set(first) == {SVID_SECRET, ROOT_SECRET} == {"default", "ROOTCA"}
    assert first["ROOTCA"].validation_context.trusted_ca.inline_bytes == authority.trust_bundle
    chain = first["default"].tls_certificate.certificate_chain.inline_bytes
    assert leaf_of(chain).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier) == ["spiffe://cluster.local/ns/shop/sa/cart"]
    assert secrets.secrets_for("shop", "cart", NOW + 0.5 * HOUR) is first  # not due yet
    assert secrets.next_renewal() == NOW + HOUR
    assert secrets.renew_due(NOW + 0.9 * HOUR) == []
    assert secrets.renew_due(NOW + HOUR) == [("shop", "cart")]
    second = secrets.secrets_for("shop", "cart", NOW + HOUR)
    assert second is not first
    assert second["default"].tls_certificate.certificate_chain.inline_bytes != chain
    assert secrets.next_renewal() == NOW + 2 * HOUR


async def test_the_root_is_made_once_and_kept_in_the_store() -> None:
    store = MemoryStore()
    one = await keeper.from_store(store, NOW, trust_domain="cluster.local", lifetime=HOUR)
    two = await keeper.from_store(store, NOW + HOUR, trust_domain="cluster.local",
                                  lifetime=HOUR)
    assert one.certificate == two.certificate
    assert one.key_pem() == two.key_pem()
    kept = await store.get_secret(keeper.ROOT_SECRET_NAME)
    assert kept is not None and b"PRIVATE KEY" in kept


def test_operator_ca_from_files(tmp_path: Path) -> None:
    made = CertificateAuthority.create_root(NOW)
    (tmp_path / "ca.pem").write_bytes(made.certificate_pem())
    (tmp_path / "ca.key").write_bytes(made.key_pem())
    loaded = keeper.from_files(tmp_path / "ca.pem", tmp_path / "ca.key",
                               trust_domain="x.y", lifetime=HOUR)
    assert loaded.certificate == made.certificate and loaded.trust_domain == "x.y"
    with pytest.raises(CaError, match="cannot read"):
        keeper.from_files(tmp_path / "missing.pem", tmp_path / "ca.key",
                          trust_domain="x.y", lifetime=HOUR)


def test_command_line_ca_flags() -> None:
    from controlplane.main import parse_args

    args = parse_args(["--mesh", "m.yaml", "--cert-lifetime", "90s", "--trust-domain", "a.b"])
    assert args.cert_lifetime == datetime.timedelta(seconds=90) and args.trust_domain == "a.b"
    assert parse_args(["--mesh", "m.yaml"]).cert_lifetime == datetime.timedelta(hours=24)
    for bad in (["--cert-lifetime", "soon"], ["--cert-lifetime", "0s"], ["--ca-cert", "x"]):
        with pytest.raises(SystemExit):
            parse_args(["--mesh", "m.yaml", *bad])


def test_the_control_planes_serving_certificate_names_and_renewal() -> None:
    from controlplane.ca.serving import ServingCertificate

    clock = [NOW]
    authority = CertificateAuthority.create_root(NOW, lifetime=2 * HOUR)
    serving = ServingCertificate(authority, ("127.0.0.1", "cp.mesh"), clock=lambda: clock[0])
    leaf = leaf_of(serving.svid.certificate_chain)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/pointsman-system/sa/controlplane"]
    assert san.get_values_for_type(x509.DNSName) == ["cp.mesh"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert serving.fetch() is None  # gRPC keeps the current one
    first = serving.svid
    clock[0] = NOW + HOUR  # half life
    assert serving.fetch() is not None and serving.svid.serial != first.serial
    assert serving.fetch() is None


def test_command_line_tls_from_the_ca() -> None:
    from controlplane.main import parse_args, tls_names

    args = parse_args(["--mesh", "m.yaml", "--ca-cert", "c", "--ca-key", "k", "--tls",
                       "--listen", "10.0.0.5:18000"])
    assert tls_names(args) == ("10.0.0.5", "localhost")  # off loopback is fine with --tls
    for bad in (["--tls"], ["--tls", "--ca-cert", "c", "--ca-key", "k", "--tls-cert", "x",
                            "--tls-key", "y"]):
        with pytest.raises(SystemExit):
            parse_args(["--mesh", "m.yaml", *bad])


def test_an_expired_ca_issues_nothing_and_is_refused_at_start(tmp_path: Path) -> None:
    old = CertificateAuthority.create_root(NOW - datetime.timedelta(days=3651))
    with pytest.raises(CaError, match="expired"):
        old.issue("default", "a", NOW)
    (tmp_path / "ca.pem").write_bytes(old.certificate_pem())
    (tmp_path / "ca.key").write_bytes(old.key_pem())
    with pytest.raises(CaError, match="expired"):
        keeper.from_files(tmp_path / "ca.pem", tmp_path / "ca.key", trust_domain="x",
                          lifetime=HOUR)
