"""SVIDs as SDS Secrets (`envoy.extensions.transport_sockets.tls.v3.Secret`), sans I/O.

Istio's names, which Envoy configurations written for a mesh already use (istio
pilot/pkg/model/authentication.go, SDSDefaultResourceName / SDSRootResourceName):
- `default`: the sidecar's own SVID, a `tls_certificate` (chain and private key);
- `ROOTCA`: the trust bundle, a `validation_context` with `trusted_ca`.
This contract (the names, the SPIFFE ID format, the trust domain) is what the mesh compiler's
automatic mTLS refers to.

One SVID per identity (namespace, service), shared by the sidecars of that Service: they hold
the same SPIFFE ID (Istio gives each pod its own key; ours are made by the control plane, and
a per-identity key keeps the secrets of a Service one cache entry). `secrets_for` issues on
first use and whenever the SVID held is due (`Svid.renew_at`); `renew_due(now)` re-issues every
due one and says which identities changed, so the caller pushes them; `next_renewal()` says
when to call it again.
"""

from __future__ import annotations

import datetime

from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from controlplane.ca.authority import CertificateAuthority, Svid
from controlplane.mesh.identity import CERTIFICATE_SECRET, TRUST_BUNDLE_SECRET

SVID_SECRET = CERTIFICATE_SECRET  # the names the mesh compiler's SDS configs use
ROOT_SECRET = TRUST_BUNDLE_SECRET

Identity = tuple[str, str]  # (namespace, service)


class IdentitySecrets:
    def __init__(self, authority: CertificateAuthority) -> None:
        self.authority = authority
        self._svids: dict[Identity, Svid] = {}
        self._secrets: dict[Identity, dict[str, secret_pb2.Secret]] = {}
        self._root = root_secret(authority.trust_bundle)

    def __repr__(self) -> str:
        return f"IdentitySecrets({self.authority!r}, {len(self._svids)} identities)"

    def svid(self, identity: Identity) -> Svid | None:
        return self._svids.get(identity)

    def identities(self) -> list[Identity]:
        return sorted(self._svids)

    def secrets_for(self, namespace: str, service: str,
                    now: datetime.datetime) -> dict[str, secret_pb2.Secret]:
        """`default` and `ROOTCA` for the identity; the same dict (and messages) until the
        SVID is re-issued, so a cache keeps its serialised copy."""
        identity = (namespace, service)
        held = self._svids.get(identity)
        if held is None or now >= held.renew_at:
            self._issue(identity, now)
        return self._secrets[identity]

    def renew_due(self, now: datetime.datetime) -> list[Identity]:
        due = [identity for identity, svid in self._svids.items() if now >= svid.renew_at]
        for identity in due:
            self._issue(identity, now)
        return sorted(due)

    def next_renewal(self) -> datetime.datetime | None:
        return min((svid.renew_at for svid in self._svids.values()), default=None)

    def forget(self, identity: Identity) -> None:
        self._svids.pop(identity, None)
        self._secrets.pop(identity, None)

    def _issue(self, identity: Identity, now: datetime.datetime) -> None:
        svid = self.authority.issue(*identity, now)
        self._svids[identity] = svid
        self._secrets[identity] = {SVID_SECRET: svid_secret(svid), ROOT_SECRET: self._root}


def svid_secret(svid: Svid) -> secret_pb2.Secret:
    secret = secret_pb2.Secret(name=SVID_SECRET)
    secret.tls_certificate.certificate_chain.inline_bytes = svid.certificate_chain
    secret.tls_certificate.private_key.inline_bytes = svid.private_key
    return secret


def root_secret(bundle: bytes) -> secret_pb2.Secret:
    secret = secret_pb2.Secret(name=ROOT_SECRET)
    secret.validation_context.trusted_ca.inline_bytes = bundle
    return secret
