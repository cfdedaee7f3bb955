"""The SSL context of one TLS context, bound to the secrets it is made of.

`TlsBinding` (built by proxy.model.tls when it translates a DownstreamTlsContext or an
UpstreamTlsContext) loads the certificate and trusted CA, and again each new version of its SDS
secrets (proxy.model.secret.DYNAMIC calls `reload`): into the same SSLContext, for new
handshakes only (OpenSSL copies the certificate into each new connection; configuration/
security/secret, "key rotation"). `SanCheckingObject` is the SSLObject of every such context:
after the handshake it checks `match_typed_subject_alt_names` and counts Envoy's TLS stats
(docs: configuration/listeners/stats, "TLS statistics").
"""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protos.errors import ConfigError
from proxy.model.secret import DYNAMIC, SdsRef, Secret, TlsCertificate, ValidationContext


@dataclass(frozen=True)
class CommonTls:
    """A CommonTlsContext translated: what is known now, and the SDS secrets it names."""

    certificate: TlsCertificate | None
    validation: ValidationContext | None
    alpn: tuple[str, ...]
    certificate_ref: SdsRef | None = None
    validation_ref: SdsRef | None = None

    @property
    def refs(self) -> tuple[SdsRef, ...]:
        return tuple(ref for ref in (self.certificate_ref, self.validation_ref) if ref)


class TlsBinding:
    """One SSLContext and the secrets it is made of. `reload()` (SecretRegistry.update)
    loads the current version of its SDS secrets into the same context, for new handshakes;
    `validation` is the validation context in force (its SAN matchers included)."""

    def __init__(self, context: ssl.SSLContext, common: CommonTls, *, server: bool,
                 require_client: bool = False) -> None:
        self.context = context
        self.common = common
        self.server = server
        self.require_client = require_client
        self.certificate: TlsCertificate | None = None
        self.validation: ValidationContext | None = None
        self.trusted_loaded: bytes | None = None
        self.counters: dict[str, Any] = {}  # Envoy's ssl.* stats, once a scope is given
        context.sslobject_class = SanCheckingObject
        context.pointsman_binding = self  # type: ignore[attr-defined]
        if common.validation_ref is not None:
            # Fail closed until the trusted CA arrives: an empty store verifies nobody (a
            # cluster added after start-up is used before its secret comes; Envoy would keep
            # it warming).
            context.verify_mode = (ssl.CERT_REQUIRED if require_client or not server
                                   else ssl.CERT_OPTIONAL)
        if common.refs:
            DYNAMIC.bind([ref.name for ref in common.refs], self)

    def __repr__(self) -> str:
        return f"TlsBinding(server={self.server}, waiting={self.waiting()})"

    def waiting(self) -> tuple[str, ...]:
        return tuple(ref.name for ref in self.common.refs
                     if _dynamic(ref) is None)

    def load(self, certificate: TlsCertificate | None, validation: ValidationContext | None,
             cert_field: str = "common_tls_context.tls_certificates[0]",
             ca_field: str = "common_tls_context.validation_context.trusted_ca") -> None:
        if certificate is not None and certificate != self.certificate:
            load_certificate(self.context, certificate, cert_field)
            self.certificate = certificate
        self.validation = validation
        if validation is not None and validation.trusted_ca is not None \
                and validation.trusted_ca != self.trusted_loaded:
            # A new bundle is added to the store (OpenSSL cannot remove a trusted CA from a
            # context in use): the roots of a rotation are trusted side by side.
            load_ca(self.context, validation, ca_field)
            self.trusted_loaded = validation.trusted_ca
            self.context.verify_mode = (ssl.CERT_REQUIRED if self.require_client or
                                        not self.server else ssl.CERT_OPTIONAL)

    def reload(self) -> None:
        certificate = self.common.certificate
        if self.common.certificate_ref is not None:
            certificate = _dynamic(self.common.certificate_ref) or certificate
        validation = _merged_validation(self.common)
        self.load(certificate, validation)

    def count_into(self, stats: Any, scope: str) -> None:
        """Count handshakes in `scope` (`listener.<address>.ssl.`, `cluster.<name>.ssl.`):
        Envoy's handshake, connection_error, fail_verify_no_cert, fail_verify_error and
        fail_verify_san (docs: configuration/listeners/stats, "TLS statistics")."""
        self.counters = {name: stats.counter(scope + name) for name in (
            "handshake", "connection_error", "fail_verify_no_cert", "fail_verify_error",
            "fail_verify_san")}

    def counted(self, outcome: str) -> None:
        counter = self.counters.get(outcome)
        if counter is not None:
            counter.inc()

    def handshake_failed(self, error: ssl.SSLError) -> None:
        """A verification failure counts as such, any other error as connection_error
        (Envoy counts a refused certificate in fail_verify_*, not in connection_error)."""
        reason = getattr(error, "reason", "") or ""
        if reason in ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "CERTIFICATE_REQUIRED"):
            self.counted("fail_verify_no_cert")
        elif isinstance(error, ssl.SSLCertVerificationError) or \
                reason == "CERTIFICATE_VERIFY_FAILED":
            self.counted("fail_verify_error")
        else:
            self.counted("connection_error")

    @property
    def checks_peer(self) -> bool:
        return bool(self.validation and self.validation.san_matchers)

    def peer_allowed(self, peer: dict[str, Any] | None) -> bool:
        """match_typed_subject_alt_names against the verified peer certificate."""
        matchers = self.validation.san_matchers if self.validation else ()
        if not matchers or not peer:
            return True
        sans = peer.get("subjectAltName", ())
        return any(matcher.matches(sans) for matcher in matchers)


class SanCheckingObject(ssl.SSLObject):
    """Fails the handshake when the peer's SANs match none of the context's matchers
    (Envoy: "ssl.fail_verify_san"); asyncio and uvloop both drive `do_handshake`."""

    def do_handshake(self) -> None:
        binding = getattr(self.context, "pointsman_binding", None)
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise  # not done yet
        except ssl.SSLError as error:
            if binding is not None:
                binding.handshake_failed(error)
            raise
        if binding is None:
            return
        if not binding.checks_peer or binding.peer_allowed(self.getpeercert()):
            binding.counted("handshake")
            return
        binding.counted("fail_verify_san")
        refused = ssl.SSLCertVerificationError(
            1, "certificate verify failed: SAN matcher")  # Envoy's words
        refused.reason = "CERTIFICATE_VERIFY_FAILED"  # type: ignore[attr-defined]
        refused.library = "SSL"  # type: ignore[attr-defined]
        refused.verify_message = "SAN matcher"  # type: ignore[attr-defined]
        raise refused


def _dynamic(ref: SdsRef) -> Any | None:
    secret = DYNAMIC.get(ref.name)
    return getattr(secret, ref.kind, None) if secret is not None else None


def _merged_validation(common: CommonTls) -> ValidationContext | None:
    """combined_validation_context: the dynamic context merged into the default one (its
    trusted_ca in force, SAN matchers of both), as Envoy merges them."""
    if common.validation_ref is None:
        return common.validation
    dynamic = _dynamic(common.validation_ref)
    if dynamic is None:
        return common.validation
    if common.validation is None:
        return dynamic  # type: ignore[no-any-return]
    return ValidationContext(dynamic.trusted_ca or common.validation.trusted_ca,
                             common.validation.san_matchers + dynamic.san_matchers)


def check_secret(secret: Secret) -> None:
    """An SDS secret's certificate and key, or its trusted CA, must load (else NACK)."""
    if secret.tls_certificate is not None:
        load_certificate(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), secret.tls_certificate,
                          "tls_certificate")
    validation = secret.validation_context
    if validation is not None and validation.trusted_ca is not None:
        load_ca(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), validation,
                 "validation_context.trusted_ca")


def load_certificate(context: ssl.SSLContext, certificate: TlsCertificate,
                      field_name: str) -> None:
    # ssl only loads chains from files: write them to a private directory (mkdtemp: 0700;
    # the key file 0600), load, delete.
    with tempfile.TemporaryDirectory(prefix="pointsman-tls-") as directory:
        chain = Path(directory, "chain.pem")
        key = Path(directory, "key.pem")
        chain.write_bytes(certificate.certificate_chain)
        descriptor = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as sink:
            sink.write(certificate.private_key)
        try:
            context.load_cert_chain(chain, key)
        except ssl.SSLError as error:
            raise ConfigError(f"invalid certificate or key: {error.reason or error}",
                              field=field_name) from error


def load_ca(context: ssl.SSLContext, validation: ValidationContext, field_name: str) -> None:
    assert validation.trusted_ca is not None
    try:
        context.load_verify_locations(cadata=validation.trusted_ca.decode())
    except (ssl.SSLError, ValueError, UnicodeDecodeError) as error:
        raise ConfigError(f"invalid trusted_ca: {error}", field=field_name) from error
