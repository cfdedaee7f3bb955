"""The certificates the suite creates in code after applying base/manifests.yaml
(gateway_steps.SUITE_SETUP, suite.go "Applying programmatic resources": the
MustCreateSelfSignedCertSecret, MustCreateCASignedCertSecret and
MustCreateCASignedClientCertSecret helpers of conformance/utils/kubernetes/certificate.go),
made with `cryptography` as Secrets of type kubernetes.io/tls, and the CAs as ConfigMaps
(`ca.crt`), kept as PEM for the clients too.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conformance.gateway_api.gateway_steps import SUITE_SETUP
from tests.conformance.gateway_api.status import NN


@dataclass(frozen=True)
class Pem:
    cert: bytes
    key: bytes


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _names(names: tuple[str, ...]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in names:
        if name.startswith("spiffe://"):
            out.append(x509.UniformResourceIdentifier(name))
            continue
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, names: tuple[str, ...], *,
                 issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
                 ca: bool = False, client: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Gateway API conformance"),
                      x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer[0].subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(_names(names)),
                                        critical=False)
    if not ca:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def suite_certificates() -> tuple[dict[NN, Pem], dict[NN, bytes]]:
    """The Secrets of SUITE_SETUP (certificate and key PEM) and the CAs (PEM) by name."""
    secrets: dict[NN, Pem] = {}
    cas: dict[NN, bytes] = {}
    ca_keys: dict[str, tuple[x509.Certificate, ec.EllipticCurvePrivateKey]] = {}
    for item in SUITE_SETUP:
        if item.kind == "ConfigMap":
            key = _key()
            cert = _certificate(item.name.name, key, (), ca=True)
            ca_keys[item.name.name] = (cert, key)
            cas[item.name] = cert.public_bytes(serialization.Encoding.PEM)
            continue
        spec = item.spec
        names = tuple(str(name) for name in spec.get("dnsNames", ()))  # type: ignore[attr-defined]
        issuer = ca_keys.get(str(spec.get("signedBy", ""))) if spec.get("signedBy") else None
        key = _key()
        client = spec["generated"] == "MustCreateCASignedClientCertSecret"
        cert = _certificate(item.name.name, key, names, issuer=issuer, client=client)
        secrets[item.name] = Pem(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))
    return secrets, cas


def secret_manifest(name: NN, pem: Pem) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name.name, "namespace": name.namespace},
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": pem.cert.decode(), "tls.key": pem.key.decode()}}


def config_map_manifest(name: NN, ca: bytes) -> dict[str, object]:
    """MustCreateCACertConfigMap: the CA certificate under `ca.crt`."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name.name, "namespace": name.namespace},
            "data": {"ca.crt": ca.decode()}}


def go_hostname_match(pattern: str, host: str) -> bool:
    """crypto/x509 matchHostnames: a `*` matches exactly one whole leftmost label, and the
    label counts must agree (so `*` alone matches no name with a dot, `*.org` matches
    example.org); case-insensitive, a trailing dot ignored."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if not pattern or not host:
        return False
    want, got = pattern.split("."), host.split(".")
    if len(want) != len(got):
        return False
    for index, (label, value) in enumerate(zip(want, got, strict=True)):
        if index == 0 and label == "*":
            continue
        if label != value:
            return False
    return True


def certificate_names(pem: bytes) -> list[str]:
    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(name) for name in san.get_values_for_type(x509.DNSName)]
