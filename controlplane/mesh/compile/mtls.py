"""Automatic mTLS between sidecars: the transport sockets (docs/mesh-security.md).

Certificates come over SDS on the ADS stream (controlplane/mesh/identity.py): `default` is
the sidecar's SVID and key, `ROOTCA` the mesh's trust bundle.

- Outbound, per endpoint (Istio's auto mTLS): sidecar endpoints (registered sidecars and
  selected workloads) carry the metadata `envoy.transport_socket_match: {tlsMode: istio}`,
  EndpointSlice addresses none (clusters.py). Every cluster to a Service port gets istiod's
  two `transport_socket_matches` (as istiod does with auto mTLS, whatever the endpoints are:
  a Service's first sidecar then changes its EDS only, and no EDS update can label an
  endpoint before its cluster has the matches): `tlsMode-istio` (match
  `{tlsMode: istio}`) with an UpstreamTlsContext that presents `default`, trusts `ROOTCA` and
  accepts only the destination's SPIFFE IDs as URI SAN (`combined_validation_context` with
  `match_typed_subject_alt_names`, as istiod builds it): the Service's own and, for a Service
  with a selector, its workloads' (compiler.py); then `tlsMode-disabled` (match `{}`,
  raw_buffer) for every other endpoint. A port whose PeerAuthentication is DISABLE gets
  neither (istiod: buildAutoMtlsSettings returns no TLS for MTLSDisable).
  SNI is istiod's cluster name form, `outbound_.PORT_._.NAME.NAMESPACE.svc.<trust domain>`;
  ALPN is the application protocol itself (`h2` for h2c/grpc ports, `http/1.1` for HTTP
  ones, none for TCP), not Istio's `istio-*` tokens, which only Istio's own proxies read.
- Inbound: a DownstreamTlsContext that presents `default`, requires a client certificate
  and trusts `ROOTCA`; STRICT has only that chain, PERMISSIVE adds a plaintext chain, told
  apart by the tls_inspector (filter_chain_match transport_protocol `tls`/`raw_buffer`, as
  istiod's inbound listeners do).
- Inbound TLS that is not the mesh's: a Gateway originating a BackendTLSPolicy's TLS to the
  workload (compile/backend_tls.py) sends the policy's `validation.hostname` as SNI, never
  the mesh's `outbound_.` form. In PERMISSIVE mode a chain matching those SNIs
  (filter_chain_match `server_names`, which Envoy tries before `transport_protocol`) passes the
  TLS through to the application, which terminates it, as istiod's passthrough chain passes
  TLS without its `istio` ALPN; the mTLS chain would answer with the mesh's certificate and
  ask for a client one. STRICT admits the mesh's mTLS only.
"""

from __future__ import annotations

from typing import Any

from controlplane.mesh.compile.envoy import DOWNSTREAM_TLS, TLS_INSPECTOR, T
from controlplane.mesh.identity import (
    ADS_SOURCE,
    CERTIFICATE_SECRET,
    TRUST_BUNDLE_SECRET,
    MeshIdentity,
)
from controlplane.mesh.resolve import HTTP_FAMILY

UPSTREAM_TLS = T + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
TLS_SOCKET = "envoy.transport_sockets.tls"
RAW_BUFFER = {"name": "envoy.transport_sockets.raw_buffer", "typed_config": {
    "@type": T + "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}}
# istiod's label of a sidecar endpoint and its match names (cluster.proto TransportSocketMatch).
TLS_MODE = {"tlsMode": "istio"}
SIDECAR_METADATA = {"filter_metadata": {"envoy.transport_socket_match": TLS_MODE}}
H2 = ("h2c", "grpc")


def alpn(protocol: str) -> list[str]:
    if protocol in H2:
        return ["h2"]
    return ["http/1.1"] if protocol in HTTP_FAMILY else []


def sni(identity: MeshIdentity, namespace: str, name: str, port: int) -> str:
    return f"outbound_.{port}_._.{name}.{namespace}.svc.{identity.trust_domain}"


def _certificate() -> list[dict[str, Any]]:
    return [{"name": CERTIFICATE_SECRET, "sds_config": ADS_SOURCE}]


def _trust_bundle() -> dict[str, Any]:
    return {"name": TRUST_BUNDLE_SECRET, "sds_config": ADS_SOURCE}


def upstream_socket(identity: MeshIdentity, namespace: str, name: str, port: int,
                    protocol: str, spiffe_ids: list[str]) -> dict[str, Any]:
    """`spiffe_ids`: the identities the destination's endpoints may present (at least one)."""
    assert spiffe_ids, "an empty SAN list would accept any certificate of the CA"
    common: dict[str, Any] = {
        "tls_certificate_sds_secret_configs": _certificate(),
        "combined_validation_context": {
            "default_validation_context": {"match_typed_subject_alt_names": [
                {"san_type": "URI", "matcher": {"exact": spiffe_id}}
                for spiffe_id in spiffe_ids]},
            "validation_context_sds_secret_config": _trust_bundle()}}
    if alpn(protocol):
        common["alpn_protocols"] = alpn(protocol)
    return {"name": TLS_SOCKET, "typed_config": {
        "@type": UPSTREAM_TLS, "sni": sni(identity, namespace, name, port),
        "common_tls_context": common}}


def socket_matches(identity: MeshIdentity, namespace: str, name: str, port: int,
                   protocol: str, spiffe_ids: list[str]) -> list[dict[str, Any]]:
    """mTLS to the endpoints labelled as sidecars, plaintext to the others (EndpointSlice
    addresses): the cluster's `transport_socket_matches`, istiod's names and order."""
    return [{"name": "tlsMode-istio", "match": TLS_MODE,
             "transport_socket": upstream_socket(identity, namespace, name, port, protocol,
                                                 spiffe_ids)},
            {"name": "tlsMode-disabled", "match": {}, "transport_socket": RAW_BUFFER}]


def downstream_socket(protocol: str) -> dict[str, Any]:
    common: dict[str, Any] = {
        "tls_certificate_sds_secret_configs": _certificate(),
        "validation_context_sds_secret_config": _trust_bundle()}
    if protocol in HTTP_FAMILY:
        common["alpn_protocols"] = ["h2", "http/1.1"]
    return {"name": TLS_SOCKET, "typed_config": {
        "@type": DOWNSTREAM_TLS, "require_client_certificate": True,
        "common_tls_context": common}}


def inbound_chains(mode: str, filters: list[dict[str, Any]], protocol: str, *,
                   passthrough: tuple[str, ...] = (),
                   passthrough_filters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The listener fields for one inbound port in `mode` (STRICT, PERMISSIVE or DISABLE).
    `passthrough`: the SNIs of TLS that is the application's own (BackendTLSPolicy
    hostnames), sent on to it through `passthrough_filters` (a tcp_proxy) in PERMISSIVE mode."""
    if mode == "DISABLE":
        return {"filter_chains": [{"filters": filters}]}
    chains = [{"filter_chain_match": {"transport_protocol": "tls"},
               "transport_socket": downstream_socket(protocol), "filters": filters}]
    if mode == "PERMISSIVE":
        chains.append({"filter_chain_match": {"transport_protocol": "raw_buffer"},
                       "filters": filters})
        if passthrough:
            chains.insert(0, {"filter_chain_match": {"server_names": sorted(passthrough),
                                                     "transport_protocol": "tls"},
                              "filters": passthrough_filters or filters})
    # A client that waits for the server to speak first sends no ClientHello: after
    # listener_filters_timeout (Envoy's 15 s) it is taken as plaintext (istiod sets the same).
    return {"listener_filters": [{"name": "envoy.filters.listener.tls_inspector",
                                  "typed_config": {"@type": TLS_INSPECTOR}}],
            "continue_on_listener_filters_timeout": True,
            "filter_chains": chains}
