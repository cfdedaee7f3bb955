"""Mesh identity for tests: a CA on disk for `--ca-cert/--ca-key`, client SVIDs from it, and
one bootstrap (the same for Envoy and Pointsman) of a sidecar that takes its certificates
over SDS on ADS from the control plane (Istio's `default` and `ROOTCA`):

- `inbound` listener: mTLS (client certificate required, verified against ROOTCA) in front of
  a direct response naming the service;
- `outbound` listener: plain HTTP to cluster `peer`, which originates mTLS with the SVID and
  accepts only the server SPIFFE ID `peer_id` (match_typed_subject_alt_names).
"""

from __future__ import annotations

import datetime
import http.client
import socket
import ssl
from pathlib import Path
from typing import Any

from controlplane.ca import CertificateAuthority, Svid
from tests.support.mesh import H2

TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
       "HttpConnectionManager")
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
SDS_ADS = {"ads": {}, "resource_api_version": "V3"}
SDS_GRPC = {"api_config_source": {"api_type": "GRPC", "transport_api_version": "V3",
                                  "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]},
            "resource_api_version": "V3"}


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def write_ca(folder: Path) -> tuple[CertificateAuthority, list[str]]:
    """A root CA in `folder`; returns it and the control-plane flags that load it."""
    authority = CertificateAuthority.create_root(now())
    (folder / "ca.pem").write_bytes(authority.certificate_pem())
    (folder / "ca.key").write_bytes(authority.key_pem())
    (folder / "ca.key").chmod(0o600)
    return authority, ["--ca-cert", str(folder / "ca.pem"), "--ca-key", str(folder / "ca.key")]


def client_context(bundle: bytes, svid: Svid | None, folder: Path) -> ssl.SSLContext:
    """A client that verifies the server against `bundle` and presents `svid` (if any)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cadata=bundle.decode())
    if svid is not None:
        chain, key = folder / f"client-{svid.serial}.pem", folder / f"client-{svid.serial}.key"
        chain.write_bytes(svid.certificate_chain)
        key.write_bytes(svid.private_key)
        context.load_cert_chain(chain, key)
    return context


def https_get(port: int, context: ssl.SSLContext, host: str = "127.0.0.1",
              timeout: float = 5.0) -> tuple[int, bytes]:
    connection = http.client.HTTPSConnection(host, port, context=context, timeout=timeout)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def handshake_refused(port: int, context: ssl.SSLContext, host: str = "127.0.0.1") -> bool:
    """True when the server ends the connection during or right after the handshake (TLS 1.3
    reports a refused client certificate on the first read)."""
    try:
        https_get(port, context, host)
    except (ssl.SSLError, ConnectionError, http.client.HTTPException):
        return True
    return False


def peer_serial(port: int, bundle: bytes, folder: Path, svid: Svid,
                host: str = "127.0.0.1") -> int:
    """The serial number of the certificate the server presents now."""
    from cryptography import x509

    context = client_context(bundle, svid, folder)
    with socket.create_connection((host, port), timeout=5) as raw, \
            context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def _tls_socket(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"name": "envoy.transport_sockets.tls", "typed_config": {"@type": TLS + kind, **body}}


def _common(peer_id: str | None, source: dict[str, Any]) -> dict[str, Any]:
    common: dict[str, Any] = {"tls_certificate_sds_secret_configs": [
        {"name": "default", "sds_config": source}]}
    if peer_id is None:
        common["validation_context_sds_secret_config"] = {"name": "ROOTCA",
                                                          "sds_config": source}
    else:
        common["combined_validation_context"] = {
            "default_validation_context": {"match_typed_subject_alt_names": [
                {"san_type": "URI", "matcher": {"exact": peer_id}}]},
            "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": source}}
    return common


def _http_listener(name: str, address: str, port: int, route: dict[str, Any],
                   transport: dict[str, Any] | None) -> dict[str, Any]:
    chain: dict[str, Any] = {"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                          "typed_config": {
        "@type": HCM, "stat_prefix": name,
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                                            "routes": [{"match": {"prefix": "/"}, **route}]}]},
        "http_filters": [{"name": "envoy.filters.http.router",
                          "typed_config": {"@type": ROUTER}}]}}]}
    if transport is not None:
        chain["transport_socket"] = transport
    return {"name": name, "address": {"socket_address": {"address": address,
                                                         "port_value": port}},
            "filter_chains": [chain]}


def sds_sidecar_bootstrap(node_id: str, service: str, xds_port: int, *, address: str,
                          inbound_port: int, outbound_port: int, peer: tuple[str, int],
                          peer_id: str, instance_ip: str, delta: bool = False,
                          sds_stream: bool | str = False,
                          xds_ca: str | None = None, xds_name: str = "") -> dict[str, Any]:
    """`xds_ca`: reach the control plane over TLS, trusting this bundle (a file), the server
    named `xds_name` (SNI and the name checked). `sds_stream`: the secrets from
    SecretDiscoveryService (api_config_source) instead of ADS, and no ADS at all;
    "cluster": the cluster's only (Envoy crashes at start-up on a static cluster whose secrets
    come over ADS: envoyproxy/envoy#15517)."""
    source = SDS_GRPC if sds_stream is True else SDS_ADS
    cluster_source = SDS_GRPC if sds_stream else SDS_ADS
    inbound = _http_listener("inbound", address, inbound_port,
                             {"direct_response": {"status": 200,
                                                  "body": {"inline_string": service}}},
                             _tls_socket("DownstreamTlsContext", {
                                 "require_client_certificate": True,
                                 "common_tls_context": _common(None, source)}))
    outbound = _http_listener("outbound", address, outbound_port,
                              {"route": {"cluster": "peer"}}, None)
    xds = {"name": "xds", "type": "STATIC", "connect_timeout": "1s",
           "typed_extension_protocol_options": {
               "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                   "@type": H2, "explicit_http_config": {"http2_protocol_options": {}}}},
           "load_assignment": {"cluster_name": "xds", "endpoints": [{"lb_endpoints": [
               {"endpoint": {"address": {"socket_address": {
                   "address": "127.0.0.1", "port_value": xds_port}}}}]}]}}
    if xds_ca is not None:
        xds["transport_socket"] = _tls_socket("UpstreamTlsContext", {
            "sni": xds_name, "common_tls_context": {
                "validation_context": {"trusted_ca": {"filename": xds_ca}}}})
    peer_cluster = {"name": "peer", "type": "STATIC", "connect_timeout": "2s",
                    "transport_socket": _tls_socket("UpstreamTlsContext",
                                                    {"common_tls_context": _common(
                                                        peer_id, cluster_source)}),
                    "load_assignment": {"cluster_name": "peer", "endpoints": [{
                        "lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                            "address": peer[0], "port_value": peer[1]}}}}]}]}}
    bootstrap: dict[str, Any] = {
        "node": {"id": node_id, "cluster": service,
                 "metadata": {"namespace": "default", "instance_ip": instance_ip,
                              "outbound_ip": "127.0.0.3"}},
        "static_resources": {"listeners": [inbound, outbound],
                             "clusters": [xds, peer_cluster]},
    }
    if sds_stream is not True:
        bootstrap["dynamic_resources"] = {"ads_config": {
            "api_type": "DELTA_GRPC" if delta else "GRPC", "transport_api_version": "V3",
            "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]}}
    return bootstrap


MESH = """
apiVersion: v1
kind: Service
metadata: {name: alpha}
spec: {ports: [{name: http, port: 8080, appProtocol: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: beta}
spec: {ports: [{name: http, port: 8080, appProtocol: http}]}
"""
