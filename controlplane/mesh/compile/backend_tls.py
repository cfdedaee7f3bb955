"""A Service port's BackendTLSPolicy as the transport socket of its cluster: an
UpstreamTlsContext (envoy.extensions.transport_sockets.tls.v3) with

- `sni`: the policy's `validation.hostname` ("Hostname MUST be used as the SNI", RFC 6066);
- `validation_context.trusted_ca`: the CA certificates of its ConfigMaps, inline, or the
  system bundle's file (`wellKnownCACertificates: System`);
- `match_typed_subject_alt_names`: the policy's `subjectAltNames` (Hostname as DNS, URI as
  URI) when given, else `hostname` as a DNS SAN ("Hostname MUST be used for authentication
  [...] unless SubjectAltNames is specified"). Envoy matches a DNS SAN exactly, or against a
  wildcard SAN of the certificate (CertificateValidationContext docs).
- `alpn_protocols`: h2 for gRPC and h2c ports, http/1.1 for HTTP ones;
- `tls_certificates`: the Gateway's `spec.tls.backend.clientCertificateRef` Secret, when set
  and usable (GatewayBackendTLS: "the client certificate to present to backends").

A Gateway's route to such a port sends to a cluster of its own (a variant of the port's:
compile/http_routes.py `edge_use`), so sidecars calling the port are unchanged: for them the
port carries TLS end to end (controlplane.mesh.backendtls).
"""

from __future__ import annotations

from typing import Any

from controlplane.mesh.backendtls import SYSTEM_CA_FILE, BackendTls
from controlplane.mesh.compile.mtls import TLS_SOCKET, UPSTREAM_TLS

SAN_TYPES = {"Hostname": "DNS", "URI": "URI"}


def backend_tls_socket(settings: BackendTls, protocol: str) -> dict[str, Any]:
    trusted = ({"filename": SYSTEM_CA_FILE} if settings.system
               else {"inline_string": settings.trusted_ca.decode()})
    names = [{"san_type": SAN_TYPES[item.type], "matcher": {"exact": item.value}}
             for item in settings.subject_alt_names] or [
                 {"san_type": "DNS", "matcher": {"exact": settings.hostname}}]
    common: dict[str, Any] = {"validation_context": {"trusted_ca": trusted,
                                                     "match_typed_subject_alt_names": names}}
    if settings.client_chain:  # the Gateway's spec.tls.backend.clientCertificateRef
        common["tls_certificates"] = [{
            "certificate_chain": {"inline_string": settings.client_chain.decode()},
            "private_key": {"inline_string": settings.client_key.decode()}}]
    if protocol in ("grpc", "h2c"):
        common["alpn_protocols"] = ["h2"]
    elif protocol == "http":
        common["alpn_protocols"] = ["http/1.1"]
    return {"name": TLS_SOCKET, "typed_config": {
        "@type": UPSTREAM_TLS, "sni": settings.hostname, "common_tls_context": common}}
