"""The sidecar's own xDS client certificate, from the control plane's certificate service
(`pointsman.identity.v1.CertificateService.CreateCertificate`; Istio's agent does the same
with istiod's `IstioCertificateService`), so that xDS runs over mTLS (docs/mesh-security.md,
"The xDS trust model").

1. `new_request`: a fresh ECDSA P-256 key (it never leaves this process and its files) and a
   PKCS#10 request (RFC 2986) whose only subjectAltName is the sidecar's SPIFFE ID.
2. `request_certificate`: the call, over TLS trusting `--xds-ca`, proving the identity with the
   join token (the first time, to `--ca-server`) or with the current certificate (renewal, to
   the xDS port over mTLS).
3. `write_files`: the chain (leaf and intermediates) and key to `xds-cert.pem` / `xds-key.pem`
   (mode 0600, in a folder of mode 0700), replaced atomically (rename), which the bootstrap's
   `xds` cluster names in its UpstreamTlsContext `tls_certificates`.
4. `Renewer`: a thread that renews at half life (Istio's 50%) over mTLS, with the join token
   when that fails (a certificate that expired while the control plane was away), retrying
   every `RETRY` seconds until it succeeds; a Pointsman sidecar reads the files again for each
   new xDS connection (proxy/server.py `_ads_credentials`), so the open stream is not dropped.

Issued certificates are decided by `Issued.from_chain` without I/O (tests give `now`).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from protos.gen.pointsman.identity.v1 import identity_pb2 as pb

log = logging.getLogger(__name__)
METHOD = "/pointsman.identity.v1.CertificateService/CreateCertificate"
TOKEN_METADATA = "x-pointsman-join-token"  # controlplane/ca/tokens.py METADATA_KEY
CERT_FILE, KEY_FILE = "xds-cert.pem", "xds-key.pem"
TIMEOUT = 10.0
RETRY = 5.0
STARTUP_PATIENCE = 60.0  # seconds a starting sidecar waits for an unreachable control plane
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class CertificateError(Exception):
    """The certificate could not be had (names the address and gRPC's status)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable  # the control plane was not reached (yet)


@dataclass(frozen=True)
class Request:
    spiffe_id: str
    key_pem: bytes = field(repr=False)
    csr_pem: str


@dataclass(frozen=True)
class Issued:
    chain_pem: bytes  # the leaf, then intermediates (what a TLS client sends)
    key_pem: bytes = field(repr=False)
    not_after: datetime.datetime
    renew_at: datetime.datetime

    @classmethod
    def from_chain(cls, chain: list[str], request: Request,
                   now: datetime.datetime) -> Issued:
        """Check the answer is for our key and identity; renew half way (from `now`)."""
        if not chain:
            raise CertificateError("the control plane answered with no certificate")
        leaf = x509.load_pem_x509_certificate(chain[0].encode())
        key = serialization.load_pem_private_key(request.key_pem, password=None)
        if _spki(leaf.public_key()) != _spki(key.public_key()):
            raise CertificateError("the issued certificate is not for the requested key")
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if names.get_values_for_type(x509.UniformResourceIdentifier) != [request.spiffe_id]:
            raise CertificateError(f"the issued certificate is not {request.spiffe_id}")
        # the root (last, Istio's order) is left out: the peer has it (RFC 8446 4.4.2)
        sent = chain[:-1] if len(chain) > 1 else chain
        not_after = leaf.not_valid_after_utc
        return cls("".join(sent).encode(), request.key_pem, not_after,
                   now + (not_after - now) / 2)


def new_request(spiffe_id: str) -> Request:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
                          critical=True)
           .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return Request(spiffe_id, key_pem, csr.public_bytes(serialization.Encoding.PEM).decode())


def _spki(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined,no-any-return]
                            serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class Endpoint:
    """Where to ask: `target` HOST:PORT, trusting `ca` (PEM), checking the name `sni`."""

    target: str
    ca: bytes
    sni: str = ""


def request_certificate(endpoint: Endpoint, request: Request, *, token: str = "",
                        client: tuple[bytes, bytes] | None = None) -> list[str]:
    """One CreateCertificate call; `client`: (chain, key) presented over mTLS (renewal)."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=endpoint.ca, private_key=client[1] if client else None,
        certificate_chain=client[0] if client else None)
    options = (("grpc.ssl_target_name_override", endpoint.sni),) if endpoint.sni else ()
    metadata = ((TOKEN_METADATA, token),) if token else None
    with grpc.secure_channel(endpoint.target, credentials, options=options) as channel:
        call = channel.unary_unary(METHOD, request_serializer=_serialize,
                                   response_deserializer=pb.CertificateResponse.FromString)
        try:
            response = call(pb.CertificateRequest(csr=request.csr_pem), timeout=TIMEOUT,
                            metadata=metadata)
        except grpc.RpcError as error:
            code = error.code()  # type: ignore[attr-defined]
            raise CertificateError(f"{endpoint.target}: {code.name}: "
                                   f"{error.details()}",  # type: ignore[attr-defined]
                                   retryable=code in RETRYABLE) from None
    return list(response.cert_chain)


def first_certificate(endpoint: Endpoint, request: Request, token: str, *,
                      patience: float = STARTUP_PATIENCE,
                      ask: Callable[..., list[str]] | None = None,
                      clock: Callable[[], float] = time.monotonic,
                      sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """At start: ask, and while the control plane is unreachable ask again every second for
    `patience` seconds (a sidecar may start before its control plane); a refusal is final."""
    deadline = clock() + patience
    while True:
        try:
            return (ask or request_certificate)(endpoint, request, token=token)
        except CertificateError as error:
            if not error.retryable or clock() >= deadline:
                raise
            log.warning("xDS client certificate: %s; asking again", error)
        sleep(1.0)


def _serialize(message: pb.CertificateRequest) -> bytes:
    return bytes(message.SerializeToString())


def write_files(folder: Path, issued: Issued) -> tuple[Path, Path]:
    """Both files mode 0600, each replaced by a rename (a reader sees old or new, whole)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths = folder / CERT_FILE, folder / KEY_FILE
    for path, data in ((paths[1], issued.key_pem), (paths[0], issued.chain_pem)):
        temporary = path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(descriptor, data)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    return paths


SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
SDS_FILE, SDS_SECRET = "xds-client-sds.json", "xds-client"


def write_sds_file(folder: Path, issued: Issued) -> Path:
    """For Envoy: the certificate and key as one SDS Secret `xds-client` in a file (a
    DiscoveryResponse, Envoy's filesystem subscription), mode 0600, replaced by a rename into
    its folder, which Envoy watches (`path_config_source.watched_directory`): Envoy reloads
    the secret and its next connection to the control plane presents the new certificate."""
    secret = {"@type": SECRET_TYPE, "name": SDS_SECRET, "tls_certificate": {
        "certificate_chain": {"inline_string": issued.chain_pem.decode()},
        "private_key": {"inline_string": issued.key_pem.decode()}}}
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / SDS_FILE
    temporary = folder.parent / f".{folder.name}-{SDS_FILE}.tmp"  # outside the watched folder
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(descriptor, json.dumps({"resources": [secret]}).encode())
    finally:
        os.close(descriptor)
    os.replace(temporary, path)
    return path


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Renewer:
    """Renews the certificate in `folder` at half life over mTLS to `endpoint`, until
    `stop()`. A thread: the sidecar's proxy owns the event loop, and a call takes < TIMEOUT."""

    def __init__(self, endpoint: Endpoint, folder: Path, issued: Issued, spiffe_id: str, *,
                 fallback: tuple[Endpoint, str] | None = None,
                 write: Callable[[Path, Issued], object] = write_files,
                 clock: Callable[[], datetime.datetime] = utc_now) -> None:
        self.endpoint = endpoint
        self.write = write  # write_files (Pointsman), write_sds_file (Envoy)
        self.fallback = fallback  # (where, join token): when mTLS renewal fails
        self.folder = folder
        self.issued = issued
        self.spiffe_id = spiffe_id
        self.clock = clock
        self.renewals = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xds-cert-renewer", daemon=True)

    def __repr__(self) -> str:
        return f"Renewer({self.spiffe_id}, renew_at={self.issued.renew_at.isoformat()})"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(TIMEOUT + 1)

    def _run(self) -> None:
        while not self._stop.wait(self._delay()):
            try:
                self.renew_once()
            except Exception as error:  # logged; tried again in RETRY seconds
                log.warning("xDS client certificate renewal failed: %s", error)
                self._stop.wait(RETRY)

    def _delay(self) -> float:
        return max(0.0, (self.issued.renew_at - self.clock()).total_seconds())

    def renew_once(self) -> Issued:
        """Over mTLS with the current certificate; if that fails (it expired while the
        control plane was away, say) and a join token is known, with the token, as at start."""
        request = new_request(self.spiffe_id)
        try:
            chain = request_certificate(self.endpoint, request,
                                        client=(self.issued.chain_pem, self.issued.key_pem))
        except CertificateError as error:
            if self.fallback is None:
                raise
            log.warning("xDS client certificate renewal over mTLS failed (%s): asking %s with "
                        "the join token", error, self.fallback[0].target)
            chain = request_certificate(self.fallback[0], request, token=self.fallback[1])
        issued = Issued.from_chain(chain, request, self.clock())
        self.write(self.folder, issued)
        self.issued = issued
        self.renewals += 1
        log.info("xDS client certificate renewed: valid until %s", issued.not_after.isoformat())
        return issued
