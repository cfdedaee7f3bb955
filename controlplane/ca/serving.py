"""xDS over TLS with a certificate from the mesh CA (`pointsman controlplane --tls`): the
control plane issues itself an SVID (`spiffe://<trust-domain>/ns/pointsman-system/sa/
controlplane`, as istiod's is `.../ns/istio-system/sa/istiod`) with the names sidecars reach it
by (DNS names and IP addresses, which gRPC clients check), and renews it at half life: gRPC
asks `fetch` before every new connection's handshake (grpc.dynamic_ssl_server_credentials),
from one of its own threads, hence the lock. Sidecars trust the mesh's bundle (`ROOTCA`, the
root the operator hands them: `pointsman sidecar --xds-ca FILE`)."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable
from typing import Any

import grpc

from controlplane.ca.authority import CertificateAuthority, Svid

NAMESPACE, ACCOUNT = "pointsman-system", "controlplane"


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class ServingCertificate:
    def __init__(self, authority: CertificateAuthority, hostnames: tuple[str, ...], *,
                 clock: Callable[[], datetime.datetime] = utc_now,
                 mutual: bool = False) -> None:
        self.authority = authority
        self.mutual = mutual
        self.hostnames = hostnames
        self.clock = clock
        self._lock = threading.Lock()
        self.svid = self._issue()

    def __repr__(self) -> str:
        return (f"ServingCertificate({self.svid.spiffe_id}, {self.hostnames}, "
                f"mutual={self.mutual})")

    def _issue(self) -> Svid:
        return self.authority.issue(NAMESPACE, ACCOUNT, self.clock(), hostnames=self.hostnames)

    def configuration(self) -> Any:
        return grpc.ssl_server_certificate_configuration(
            [(self.svid.private_key, self.svid.certificate_chain)],
            root_certificates=self.authority.trust_bundle if self.mutual else None)

    def fetch(self) -> Any:
        """A new configuration once the certificate is due, else None (keep the current)."""
        with self._lock:
            if self.clock() < self.svid.renew_at:
                return None
            self.svid = self._issue()
            return self.configuration()

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self.configuration(), self.fetch, require_client_authentication=self.mutual)
