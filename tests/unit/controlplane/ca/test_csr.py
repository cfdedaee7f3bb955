"""Certificates from signing requests (controlplane/ca/csr.py) and the binding of an xDS stream
to its client certificate (controlplane/ca/admission.py), without sockets: explicit `now`."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from envoy.config.core.v3 import base_pb2

from controlplane.ca import CertificateAuthority
from controlplane.ca.admission import XdsAdmission, node_claim
from controlplane.ca.csr import CsrError, peer_identity, sign_request
from controlplane.ca.tokens import METADATA_KEY, JoinTokens, Refused, TokenBook
from controlplane.store import MemoryStore
from proxy.deploy.certificate import new_request

NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)
BETA = "spiffe://cluster.local/ns/default/sa/beta"


def authority(lifetime: datetime.timedelta = datetime.timedelta(hours=24)
              ) -> CertificateAuthority:
    return CertificateAuthority.create_root(NOW, lifetime=lifetime)


def csr(names: list[x509.GeneralName], key: object | None = None) -> str:
    signing = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=True)
    request = builder.sign(signing, hashes.SHA256())  # type: ignore[arg-type]
    return request.public_bytes(serialization.Encoding.PEM).decode()


def test_a_request_for_the_callers_identity_is_signed_for_its_key() -> None:
    ca = authority()
    request = new_request(BETA)
    issued = sign_request(ca, request.csr_pem, ("default", "beta"), NOW)
    leaf = x509.load_pem_x509_certificate(issued.chain[0].encode())
    asked = x509.load_pem_x509_csr(request.csr_pem.encode())
    assert leaf.public_key() == asked.public_key()
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [BETA]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert issued.chain[-1].encode() == ca.trust_bundle  # the root last, Istio's order
    assert issued.not_after == NOW + datetime.timedelta(hours=24)


def test_validity_is_at_most_the_cas_lifetime() -> None:
    ca = authority(datetime.timedelta(hours=1))
    asked = sign_request(ca, new_request(BETA).csr_pem, ("default", "beta"), NOW,
                         datetime.timedelta(minutes=10))
    assert asked.not_after == NOW + datetime.timedelta(minutes=10)
    longer = sign_request(ca, new_request(BETA).csr_pem, ("default", "beta"), NOW,
                          datetime.timedelta(days=30))
    assert longer.not_after == NOW + datetime.timedelta(hours=1)


def test_a_request_for_another_identity_is_denied() -> None:
    with pytest.raises(CsrError, match=r"is for spiffe://cluster\.local/ns/default/sa/alpha "
                                       "but the caller is") as refused:
        sign_request(authority(), new_request("spiffe://cluster.local/ns/default/sa/alpha")
                     .csr_pem, ("default", "beta"), NOW)
    assert refused.value.denied
    other_domain = new_request("spiffe://evil.example/ns/default/sa/beta").csr_pem
    with pytest.raises(CsrError) as refused:
        sign_request(authority(), other_domain, ("default", "beta"), NOW)
    assert refused.value.denied


@pytest.mark.parametrize(("request_pem", "message"), [
    ("", "PEM certificate signing request"),
    ("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
     "not a PEM PKCS#10 request"),
    (csr([]), "no subjectAltName"),
    (csr([x509.UniformResourceIdentifier(BETA), x509.DNSName("beta")]), "exactly one URI"),
    (csr([x509.DNSName("beta")]), "exactly one URI"),
    (csr([x509.UniformResourceIdentifier(BETA)], rsa.generate_private_key(65537, 1024)),
     "RSA of 2048"),
])
def test_malformed_requests_are_invalid(request_pem: str, message: str) -> None:
    with pytest.raises(CsrError, match=message) as refused:
        sign_request(authority(), request_pem, ("default", "beta"), NOW)
    assert not refused.value.denied


def test_a_request_whose_signature_does_not_verify_is_invalid() -> None:
    good = x509.load_pem_x509_csr(new_request(BETA).csr_pem.encode())
    der = bytearray(good.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the signature's last byte
    import base64
    pem = ("-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(der)).decode()
           + "-----END CERTIFICATE REQUEST-----\n")
    with pytest.raises(CsrError, match=r"not a PEM|does not verify"):
        sign_request(authority(), pem, ("default", "beta"), NOW)


def auth(certificate: bytes) -> dict[str, list[bytes]]:
    """What grpc's auth_context() holds for a verified client certificate."""
    return {"x509_pem_cert": [certificate], "transport_security_type": [b"ssl"]}


def test_peer_identity_of_a_client_certificate() -> None:
    ca = authority()
    svid = ca.issue("shop", "beta", NOW)
    leaf = svid.certificate_chain.split(b"-----END CERTIFICATE-----")[0] + \
        b"-----END CERTIFICATE-----\n"
    assert peer_identity(auth(leaf), "cluster.local") == ("shop", "beta")
    assert peer_identity({}, "cluster.local") is None
    with pytest.raises(CsrError, match=r"no SPIFFE ID of other\.domain") as refused:
        peer_identity(auth(leaf), "other.domain")
    assert refused.value.denied


def node(service: str, namespace: str | None = None) -> base_pb2.Node:
    found = base_pb2.Node(id=f"{service}-1", cluster=service)
    if namespace is not None:
        found.metadata.update({"namespace": namespace})
    return found


async def test_a_stream_is_bound_to_its_client_certificates_identity() -> None:
    ca = authority()
    refused: list[str] = []
    admission = XdsAdmission("cluster.local", refused=refused.append)
    beta = auth(ca.issue("default", "beta", NOW).certificate_chain)
    assert await admission.admit(node("beta"), [], beta) is None
    assert await admission.admit(node("beta", "default"), [], beta) is None
    with pytest.raises(Refused, match="claims default/alpha but its client certificate is "
                                      "default/beta's"):
        await admission.admit(node("alpha"), [], beta)
    with pytest.raises(Refused, match="claims shop/beta"):
        await admission.admit(node("beta", "shop"), [], beta)
    assert refused == ["identity", "identity"]
    assert node_claim(node("x", "")) == ("default", "x")


async def test_without_a_certificate_the_join_token_decides() -> None:
    book = TokenBook(MemoryStore())
    tokens = JoinTokens(book, lambda n: ("default", n.cluster))
    refused: list[str] = []
    admission = XdsAdmission("cluster.local", tokens, refused=refused.append)
    token, info = await book.create("default", "beta")
    assert await admission.admit(node("beta"), [(METADATA_KEY, token)], {}) == info.id
    with pytest.raises(Refused, match="join token is required"):
        await admission.admit(node("beta"), [], {})
    assert refused == ["token"]
    # A certificate needs no token (it is the proof), even with tokens required.
    beta = auth(authority().issue("default", "beta", NOW).certificate_chain)
    assert await admission.admit(node("beta"), [], beta) is None
    # Without tokens (no --require-join-token) a stream without a certificate is believed.
    assert await XdsAdmission("cluster.local").admit(node("beta"), [], {}) is None


async def test_the_operators_own_pki_binds_nothing() -> None:
    """`--tls-cert --client-ca`: a client certificate of another PKI is no identity; the join
    token still decides."""
    book = TokenBook(MemoryStore())
    admission = XdsAdmission("cluster.local", JoinTokens(book, lambda n: ("default", n.cluster)),
                             bind=False)
    alpha = auth(authority().issue("default", "alpha", NOW).certificate_chain)
    token, info = await book.create("default", "beta")
    assert await admission.admit(node("beta"), [(METADATA_KEY, token)], alpha) == info.id
    with pytest.raises(Refused, match="join token is required"):
        await admission.admit(node("alpha"), [], alpha)


def test_the_requested_validity_is_read_safely() -> None:
    from controlplane.ca.csr import MAX_VALIDITY, requested_validity

    assert requested_validity(0) is None and requested_validity(-5) is None
    assert requested_validity(600) == datetime.timedelta(minutes=10)
    assert requested_validity(2**63 - 1) == MAX_VALIDITY  # int64's largest: no overflow
