"""The downstream TLS peer as RBAC's `authenticated` principal sees it.

Envoy (api config/rbac/v3/rbac.proto, Principal.Authenticated): "The name of the principal.
If set, The URI SAN or DNS SAN in that order is used from the certificate, otherwise the
subject field is used. If unset, it applies to any user that is authenticated." Envoy's
matcher (filters/common/rbac/matchers.cc AuthenticatedMatcher) is false without TLS, true for
any TLS connection when principal_name is unset, else true when any URI SAN, else any DNS
SAN, else the subject (RFC 2253 form, as OpenSSL prints it) matches.

The certificate is the one the TLS handshake verified (`SSLObject.getpeercert()`: a dict when
the listener validates client certificates, empty otherwise, as Envoy only asks for a client
certificate when it has a validation context).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PEER_KEY = "pointsman.peer_tls"  # ConnectionInfo.filter_state key, set at connection_made

# RFC 4514 3 (and OpenSSL's short names, which RFC 2253 output uses).
_SHORT = {"commonName": "CN", "countryName": "C", "localityName": "L",
          "stateOrProvinceName": "ST", "organizationName": "O",
          "organizationalUnitName": "OU", "streetAddress": "STREET",
          "domainComponent": "DC", "userId": "UID", "emailAddress": "emailAddress"}


@dataclass(frozen=True)
class PeerTls:
    """A TLS downstream connection's verified peer (all empty: TLS without a peer cert)."""

    uri_sans: tuple[str, ...] = ()
    dns_sans: tuple[str, ...] = ()
    subject: str = ""

    def principal_candidates(self) -> tuple[str, ...]:
        """The names `authenticated.principal_name` is matched against, in Envoy's order."""
        return (*self.uri_sans, *self.dns_sans, self.subject)


def peer_from_ssl(ssl_object: Any) -> PeerTls:
    """From an `ssl.SSLObject` after the handshake."""
    return peer_from_cert(ssl_object.getpeercert() or {})


def peer_from_cert(cert: dict[str, Any]) -> PeerTls:
    sans = cert.get("subjectAltName", ())
    uris = tuple(value for kind, value in sans if kind == "URI")
    dns = tuple(value for kind, value in sans if kind == "DNS")
    return PeerTls(uris, dns, rfc2253(cert.get("subject", ())))


def rfc2253(subject: Any) -> str:
    """`getpeercert()`'s subject (RDNs in certificate order) as RFC 2253 prints it: last RDN
    first, attributes joined by ',', multi-valued RDNs by '+', special characters escaped."""
    rdns = []
    for rdn in reversed(tuple(subject)):
        rdns.append("+".join(f"{_SHORT.get(name, name)}={_escape(value)}" for name, value in rdn))
    return ",".join(rdns)


def _escape(value: str) -> str:
    """RFC 2253 2.4: escape , + " \\ < > ; and a leading '#' or space, a trailing space."""
    out = "".join("\\" + char if char in ',+"\\<>;' else char for char in value)
    if out.startswith(("#", " ")):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out
