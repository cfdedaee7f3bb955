"""Where the mesh CA comes from: the operator's files (`--ca-cert/--ca-key`), or a root made at
the first start and kept in the store (controlplane/store: FileStore's `secrets/` folder,
mode 0600; etcd's `PREFIX/secrets/`), so a restart and every replica sign with the same root.
The key is never logged: only the root's fingerprint is.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography.hazmat.primitives import hashes

from controlplane import logs
from controlplane.ca.authority import CaError, CertificateAuthority
from controlplane.store.base import Store

ROOT_SECRET_NAME = "ca-root"  # the root's certificate then its key, PEM
KEY_MARKER = b"-----BEGIN PRIVATE KEY-----"


def from_files(cert: Path, key: Path, *, trust_domain: str,
               lifetime: datetime.timedelta) -> CertificateAuthority:
    try:
        certificates, key_pem = cert.read_bytes(), key.read_bytes()
    except OSError as error:
        raise CaError(f"--ca-cert/--ca-key: cannot read {error.filename}: "
                      f"{error.strerror}") from error
    authority = CertificateAuthority.from_pem(certificates, key_pem, source="--ca-cert/--ca-key",
                                              trust_domain=trust_domain, lifetime=lifetime)
    expires = authority.certificate.not_valid_after_utc
    if expires <= datetime.datetime.now(datetime.UTC):
        raise CaError(f"--ca-cert: the CA certificate expired at {expires.isoformat()}")
    _announce(authority, "--ca-cert")
    return authority


async def from_store(store: Store, now: datetime.datetime, *, trust_domain: str,
                     lifetime: datetime.timedelta) -> CertificateAuthority:
    """The store's root, made (and kept) first if the store has none."""
    kept = await store.get_secret(ROOT_SECRET_NAME)
    created = False
    if kept is None:
        made = CertificateAuthority.create_root(now, trust_domain=trust_domain,
                                                lifetime=lifetime)
        value = made.certificate_pem() + made.key_pem()
        kept = await store.create_secret(ROOT_SECRET_NAME, value)
        created = kept == value
    certificates, marker, key = kept.partition(KEY_MARKER)
    if not marker:
        raise CaError(f"{store.url}: the stored CA root {ROOT_SECRET_NAME!r} has no key")
    authority = CertificateAuthority.from_pem(certificates, marker + key,
                                              source=f"{store.url} {ROOT_SECRET_NAME}",
                                              trust_domain=trust_domain, lifetime=lifetime)
    _announce(authority, "created" if created else store.url)
    return authority


def fingerprint(authority: CertificateAuthority) -> str:
    return authority.roots[0].fingerprint(hashes.SHA256()).hex(":")


def _announce(authority: CertificateAuthority, source: str) -> None:
    logs.event("ca_ready", source=source, trust_domain=authority.trust_domain,
               root_sha256=fingerprint(authority),
               root_expires=authority.roots[0].not_valid_after_utc.isoformat())
