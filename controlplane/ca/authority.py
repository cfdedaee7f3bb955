"""Issuing X.509 SVIDs, sans I/O: every call that depends on time takes `now`.

SPIFFE X509-SVID (github.com/spiffe/spiffe, standards/X509-SVID.md):
- a leaf carries exactly one URI SAN, the SPIFFE ID; `CA=false`; key usage
  `digitalSignature` (critical); ours also has extended key usage serverAuth + clientAuth
  (both ends of a mesh connection present it). Its subject is empty, so the SAN extension is
  critical (RFC 5280 4.2.1.6).
- a signing certificate has `CA=true` and `keyCertSign`; the root carries the trust domain's
  SPIFFE ID (`spiffe://<trust-domain>`).
SPIFFE IDs are Istio's: `spiffe://<trust-domain>/ns/<namespace>/sa/<service account>`, where
Pointsman's service account is the Service's name (a sidecar's node.cluster); the trust domain
defaults to Istio's `cluster.local`.

Keys are ECDSA P-256 (SPIFFE allows it; Envoy, BoringSSL and Python's ssl all accept it, and it
is much cheaper to make than RSA). The root made here lives 10 years (Istio's self-signed
root); an SVID `lifetime` (default 24 h, Istio's), never past its issuer's own expiry, and is
backdated a minute for clocks a little behind ours. It is due for re-issue at half its life
(`Svid.renew_at`), as Istio's agent renews at 50% (SECRET_GRACE_PERIOD_RATIO 0.5).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controlplane.mesh.identity import TRUST_DOMAIN

DEFAULT_TRUST_DOMAIN = TRUST_DOMAIN  # the mesh compiler reads the same (mesh/identity.py)
DEFAULT_LIFETIME = datetime.timedelta(hours=24)
ROOT_LIFETIME = datetime.timedelta(days=3650)
BACKDATE = datetime.timedelta(minutes=1)
MIN_LIFETIME = datetime.timedelta(seconds=2)

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class CaError(ValueError):
    """A CA certificate or key that cannot sign (names the flag or the store key)."""


def spiffe_id(trust_domain: str, namespace: str, service: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service}"


@dataclass(frozen=True)
class Svid:
    """One issued identity: its certificate chain (leaf first, then intermediates), its key
    (PEM, PKCS#8) and its validity. The key is never shown by `repr`."""

    spiffe_id: str
    certificate_chain: bytes
    private_key: bytes = field(repr=False)
    not_before: datetime.datetime
    not_after: datetime.datetime
    issued_at: datetime.datetime
    serial: int

    @property
    def renew_at(self) -> datetime.datetime:
        """Half way through its life from issuance (Istio's 50% grace ratio)."""
        return self.issued_at + (self.not_after - self.issued_at) / 2


class CertificateAuthority:
    """Signs SVIDs with `key` as `certificate`; `chain` are the certificates between it and
    the root (both excluded), `roots` the trust bundle."""

    def __init__(self, certificate: x509.Certificate, key: SigningKey, *,
                 chain: tuple[x509.Certificate, ...] = (),
                 roots: tuple[x509.Certificate, ...] = (),
                 trust_domain: str = DEFAULT_TRUST_DOMAIN,
                 lifetime: datetime.timedelta = DEFAULT_LIFETIME) -> None:
        self.certificate = certificate
        self.key = key
        self.chain = chain
        self.roots = roots or (certificate,)
        self.trust_domain = trust_domain
        self.lifetime = lifetime
        _check_signing(certificate, key)

    def __repr__(self) -> str:
        return (f"CertificateAuthority({self.certificate.subject.rfc4514_string()}, "
                f"trust_domain={self.trust_domain!r}, lifetime={self.lifetime})")

    # -- making one -------------------------------------------------------------------------

    @classmethod
    def create_root(cls, now: datetime.datetime, *, trust_domain: str = DEFAULT_TRUST_DOMAIN,
                    lifetime: datetime.timedelta = DEFAULT_LIFETIME) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
                          x509.NameAttribute(NameOID.COMMON_NAME, "Pointsman mesh root CA")])
        builder = (x509.CertificateBuilder()
                   .subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - BACKDATE).not_valid_after(now + ROOT_LIFETIME)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                  critical=True)
                   .add_extension(_ca_usage(), critical=True)
                   .add_extension(x509.SubjectAlternativeName(
                       [x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]),
                       critical=False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                  critical=False))
        certificate = builder.sign(key, hashes.SHA256())
        return cls(certificate, key, trust_domain=trust_domain, lifetime=lifetime)

    @classmethod
    def from_pem(cls, certificates: bytes, key: bytes, *, source: str = "CA",
                 trust_domain: str = DEFAULT_TRUST_DOMAIN,
                 lifetime: datetime.timedelta = DEFAULT_LIFETIME) -> CertificateAuthority:
        """The operator's CA: `certificates` is the signing certificate first, then the
        intermediates up to and including the root (the root alone for a root CA)."""
        try:
            found = tuple(x509.load_pem_x509_certificates(certificates))
        except ValueError as error:
            raise CaError(f"{source}: not PEM certificates ({error})") from error
        try:
            signing = serialization.load_pem_private_key(key, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as error:
            raise CaError(f"{source}: the key is not an unencrypted PEM private key") from error
        if not isinstance(signing, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise CaError(f"{source}: the key must be ECDSA or RSA")
        return cls(found[0], signing, chain=found[1:-1] if len(found) > 1 else (),
                   roots=(found[-1],), trust_domain=trust_domain, lifetime=lifetime)

    def certificate_pem(self) -> bytes:
        """The signing certificate and its chain up to the root (as `from_pem` reads)."""
        parts = (self.certificate, *self.chain,
                 *(root for root in self.roots if root != self.certificate))
        return b"".join(item.public_bytes(serialization.Encoding.PEM) for item in parts)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    # -- issuing ----------------------------------------------------------------------------

    @property
    def trust_bundle(self) -> bytes:
        """The roots a peer's SVID is verified against (PEM)."""
        return b"".join(root.public_bytes(serialization.Encoding.PEM) for root in self.roots)

    def issue(self, namespace: str, service: str, now: datetime.datetime, *,
              hostnames: tuple[str, ...] = ()) -> Svid:
        """`hostnames`: DNS names or IP addresses added as SANs beside the SPIFFE ID (the
        X509-SVID spec allows other SAN types; gRPC clients check the server's name)."""
        identity = spiffe_id(self.trust_domain, namespace, service)
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = self.sign(key.public_key(), identity, now, hostnames=hostnames)
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return Svid(identity, self.chain_pem(certificate), key_pem,
                    certificate.not_valid_before_utc, certificate.not_valid_after_utc, now,
                    certificate.serial_number)

    def sign(self, public_key: Any, identity: str, now: datetime.datetime, *,
             hostnames: tuple[str, ...] = (),
             lifetime: datetime.timedelta | None = None) -> x509.Certificate:
        """An SVID certificate for `public_key` (the caller's: a CSR's, ca/csr.py), valid
        for `lifetime` (at most the CA's own --cert-lifetime)."""
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity)]
        names += [_hostname(item) for item in hostnames]
        span = self.lifetime if lifetime is None else min(lifetime, self.lifetime)
        not_after = min(now + max(span, MIN_LIFETIME), self.certificate.not_valid_after_utc)
        if not_after <= now:
            raise CaError(f"the CA certificate expired at "
                          f"{self.certificate.not_valid_after_utc.isoformat()}: no SVID issued")
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([])).issuer_name(self.certificate.subject)
                .public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(now - BACKDATE).not_valid_after(not_after)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(_leaf_usage(), critical=True)
                .add_extension(x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                    critical=False)
                .add_extension(x509.SubjectAlternativeName(names), critical=True)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.key.public_key()), critical=False)
                .sign(self.key, hashes.SHA256()))

    def chain_pem(self, certificate: x509.Certificate) -> bytes:
        """The leaf and the intermediates after it (PEM), as a TLS peer sends them."""
        return b"".join(item.public_bytes(serialization.Encoding.PEM)
                        for item in (certificate, *self._intermediates()))

    def _intermediates(self) -> tuple[x509.Certificate, ...]:
        """What a leaf's chain carries after it: the signing certificate unless it is a root,
        and the intermediates above it (RFC 8446 4.4.2: the root may be left out)."""
        if self.certificate in self.roots:
            return ()
        return (self.certificate, *self.chain)


def _hostname(text: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        return x509.DNSName(text)


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                         decipher_only=False)


def _leaf_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=False, crl_sign=False, encipher_only=False,
                         decipher_only=False)


def _check_signing(certificate: x509.Certificate, key: SigningKey) -> None:
    """The key must be the certificate's, and the certificate a CA's (RFC 5280 4.2.1.9)."""
    if _public_der(certificate.public_key()) != _public_der(key.public_key()):
        raise CaError("the CA key does not match the CA certificate")
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound as error:
        raise CaError("the CA certificate has no basicConstraints (CA=true)") from error
    if not constraints.value.ca:
        raise CaError("the CA certificate is not a CA's (basicConstraints CA=false)")


def _public_der(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo))
