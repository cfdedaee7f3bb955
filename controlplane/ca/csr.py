"""Certificates from signing requests, sans I/O: the decisions of the certificate service
(`CreateCertificate`, protos/pointsman/identity/v1/identity.proto; Istio's
`IstioCertificateService`), and the peer identity of an mTLS caller.

- `sign_request` checks a PEM PKCS#10 request (RFC 2986) against the identity the caller proved
  (its join token's Service, or its client certificate's SPIFFE ID) and signs it: the request's
  signature must verify (proof that the caller holds the key), its only SAN must be one URI,
  that identity's SPIFFE ID (SPIFFE X509-SVID: exactly one URI SAN), and its key ECDSA (P-256
  or P-384) or RSA of 2048 bits or more. Anything else in the request (subject, other
  extensions, a CA flag) is not copied: the CA decides what an SVID holds (ca/authority.py).
- `peer_identity` reads the verified client certificate gRPC hands a servicer
  (`auth_context()["x509_pem_cert"]`; gRPC checked its chain to the mesh's bundle and its
  validity at the handshake) and returns its (namespace, service) when it is one of this trust
  domain's SPIFFE IDs (`spiffe://<trust-domain>/ns/<namespace>/sa/<service>`).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from controlplane.ca.authority import CertificateAuthority, spiffe_id

MAX_CSR_BYTES = 16 * 1024
MAX_VALIDITY = datetime.timedelta(days=3650)  # any int64 asked for is clamped below this
MIN_RSA_BITS = 2048
CURVES = (ec.SECP256R1, ec.SECP384R1)
SPIFFE_PATH = re.compile(r"^spiffe://(?P<domain>[^/]+)/ns/(?P<namespace>[^/]+)/sa/"
                         r"(?P<service>[^/]+)$")


class CsrError(ValueError):
    """A request the CA does not sign: INVALID_ARGUMENT (malformed) unless `denied`
    (PERMISSION_DENIED: a well-formed request for another identity)."""

    def __init__(self, message: str, *, denied: bool = False) -> None:
        super().__init__(message)
        self.denied = denied


@dataclass(frozen=True)
class Issued:
    spiffe_id: str
    chain: tuple[str, ...]  # PEM: the leaf, the intermediates, the root last (Istio's order)
    not_after: datetime.datetime
    serial: int


def sign_request(authority: CertificateAuthority, csr_pem: str, identity: tuple[str, str],
                 now: datetime.datetime, validity: datetime.timedelta | None = None) -> Issued:
    """Sign `csr_pem` for `identity` (namespace, service) as the caller proved it."""
    request = _load(csr_pem)
    expected = spiffe_id(authority.trust_domain, *identity)
    asked = _requested_id(request)
    if asked != expected:
        raise CsrError(f"the request is for {asked} but the caller is {expected}", denied=True)
    _check_key(request.public_key())
    certificate = authority.sign(request.public_key(), expected, now, lifetime=validity)
    parts = (*_split_pem(authority.chain_pem(certificate).decode()),
             *_split_pem(authority.trust_bundle.decode()))
    return Issued(expected, parts, certificate.not_valid_after_utc, certificate.serial_number)


def requested_validity(seconds: int) -> datetime.timedelta | None:
    """CertificateRequest.validity_duration (seconds, int64): None (the CA's lifetime) when
    not positive; clamped before it could overflow a timedelta."""
    if seconds <= 0:
        return None
    return min(datetime.timedelta(seconds=min(seconds, int(MAX_VALIDITY.total_seconds()))),
               MAX_VALIDITY)


def _load(csr_pem: str) -> x509.CertificateSigningRequest:
    if not csr_pem or len(csr_pem) > MAX_CSR_BYTES:
        raise CsrError(f"csr: a PEM certificate signing request of at most {MAX_CSR_BYTES} "
                       "bytes is required")
    try:
        request = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError as error:
        raise CsrError(f"csr: not a PEM PKCS#10 request ({error})") from error
    if not request.is_signature_valid:  # RFC 2986 4.2: proof of possession of the key
        raise CsrError("csr: its signature does not verify")
    return request


def _requested_id(request: x509.CertificateSigningRequest) -> str:
    try:
        names = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CsrError("csr: no subjectAltName: it must carry the SPIFFE ID as its only "
                       "URI SAN") from None
    except ValueError as error:  # a malformed extension
        raise CsrError(f"csr: bad extensions ({error})") from error
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1 or len(list(names)) != 1:
        raise CsrError("csr: the subjectAltName must be exactly one URI, the SPIFFE ID "
                       "(SPIFFE X509-SVID 2)")
    return str(uris[0])


def _check_key(key: object) -> None:
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, CURVES):
        return
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= MIN_RSA_BITS:
        return
    raise CsrError(f"csr: the key must be ECDSA P-256/P-384 or RSA of {MIN_RSA_BITS} bits "
                   "or more")


def _split_pem(text: str) -> list[str]:
    marker = "-----END CERTIFICATE-----"
    return [part.strip() + "\n" + marker + "\n" for part in text.split(marker) if part.strip()]


def peer_identity(auth_context: Mapping[str, Sequence[bytes]],
                  trust_domain: str) -> tuple[str, str] | None:
    """(namespace, service) of the caller's verified client certificate; None without one.
    A certificate that is no SVID of `trust_domain` is a CsrError (denied)."""
    found = auth_context.get("x509_pem_cert") or ()
    if not found:
        return None
    try:
        certificate = x509.load_pem_x509_certificate(bytes(found[0]))
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        uris = names.value.get_values_for_type(x509.UniformResourceIdentifier)
    except (ValueError, x509.ExtensionNotFound):
        raise CsrError("the client certificate has no SPIFFE ID", denied=True) from None
    match = SPIFFE_PATH.match(uris[0]) if len(uris) == 1 else None
    if match is None or match["domain"] != trust_domain:
        raise CsrError(f"the client certificate's URI SANs {uris} are no SPIFFE ID of "
                       f"{trust_domain}", denied=True)
    return match["namespace"], match["service"]
