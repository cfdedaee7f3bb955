"""The Envoy v3 bootstrap of a mesh sidecar, built from `pointsman sidecar`'s flags.

The same document starts a Pointsman sidecar or real Envoy. What it holds is the node identity
the control plane reads (docs/mesh.md, "Sidecars and Gateways: what connects": `node.cluster`
is the Service, `node.metadata` carries namespace, kind, instance_ip, app_ip, outbound_ip), an
ADS stream to the control plane (a static cluster `xds` speaking HTTP/2, Envoy's
config/bootstrap/v2/overview "ADS" example), LDS and CDS over it, and the admin address. The
inbound and outbound listeners come from the control plane over LDS: nothing else is static.
Pure data: no I/O, so it is tested without sockets.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

XDS_CLUSTER = "xds"
XDS_CLIENT_SECRET = "xds-client"  # proxy/deploy/certificate.py SDS_SECRET
JOIN_TOKEN_METADATA = "x-pointsman-join-token"  # controlplane/ca/tokens.py METADATA_KEY
# Kubernetes label syntax (apimachinery validation.IsQualifiedName, IsValidLabelValue)
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                       r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
PORT_NAME = re.compile(r"^(?=.*[a-z])(?!.*--)[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # IANA_SVC_NAME
_H2_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_H2_TYPE = "type.googleapis.com/" + _H2_OPTIONS
_TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"


@dataclass(frozen=True)
class SidecarSpec:
    """What `pointsman sidecar` was told; every address already checked (`parse_address`)."""

    service: str
    namespace: str
    node_id: str
    servers: tuple[tuple[str, int], ...]
    admin: tuple[str, int]
    instance_ip: str
    app_ip: str = "127.0.0.1"
    outbound_ip: str = "127.0.0.1"
    kind: str = "Service"  # or "Workload" (labels pick its Services) or "Gateway"
    delta: bool = False
    join_token: str = ""  # sent as gRPC metadata on the xDS stream (docs/security.md)
    xds_ca: str = ""  # a file: reach the control plane over TLS, trusting this root
    xds_name: str = ""  # the control plane's name in its certificate (SNI), when not its host
    xds_cert: str = ""  # files: the client certificate (chain) and key for xDS over mTLS
    xds_key: str = ""
    xds_sds: str = ""  # instead (Envoy): a file holding the SDS Secret `xds-client`, renewed
    labels: tuple[tuple[str, str], ...] = ()  # a Workload's
    ports: tuple[tuple[str, int], ...] = ()  # a Workload's named ports
    # a Kubernetes readinessProbe of the application, reported over xDS (proxy/readiness)
    readiness_probe: dict[str, Any] | None = field(default=None, hash=False)


def parse_label(text: str) -> tuple[str, str]:
    """`--label KEY=VALUE` (a Kubernetes label: key and value as kubectl takes them)."""
    key, sep, value = text.partition("=")
    if not sep or not LABEL_KEY.match(key) or not LABEL_VALUE.match(value):
        raise ValueError(f"--label: {text!r} is not KEY=VALUE (a Kubernetes label)")
    return key, value


def parse_port(text: str) -> tuple[str, int]:
    """`--port NAME=NUMBER`: a named port of the workload (a container port's name)."""
    name, sep, number = text.partition("=")
    if not sep or not PORT_NAME.match(name) or len(name) > 15 or not number.isdigit() \
            or not 0 < int(number) < 65536:
        raise ValueError(f"--port: {text!r} is not NAME=NUMBER (a port name, 1-65535)")
    return name, int(number)


def parse_address(text: str, flag: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` -> (host, port); ValueError naming `flag` otherwise."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{flag}: {text!r} is not HOST:PORT")
    return host, int(port)


def parse_ip(text: str, flag: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{flag}: {text!r} is not an IP address") from None


def build_bootstrap(spec: SidecarSpec) -> dict[str, Any]:
    """The bootstrap as a dict (JSON/YAML-ready, proto3 JSON field names)."""
    metadata: dict[str, Any] = {"namespace": spec.namespace, "kind": spec.kind}
    if spec.kind in ("Service", "Workload"):
        metadata.update(instance_ip=spec.instance_ip, app_ip=spec.app_ip,
                        outbound_ip=spec.outbound_ip)
    if spec.kind == "Workload":
        metadata.update(labels=dict(spec.labels), ports=dict(spec.ports))
    elif spec.instance_ip:
        metadata["instance_ip"] = spec.instance_ip
    if spec.readiness_probe is not None:  # controlplane/sources/readiness.py
        metadata.update(health_reports=True, readiness_probe=spec.readiness_probe)
    service: dict[str, Any] = {"envoy_grpc": {"cluster_name": XDS_CLUSTER}}
    if spec.join_token:
        # Envoy's GrpcService.initial_metadata: sent with every call of the xDS stream.
        service["initial_metadata"] = [{"key": JOIN_TOKEN_METADATA, "value": spec.join_token}]
    return {
        "node": {"id": spec.node_id, "cluster": spec.service, "metadata": metadata},
        "admin": {"address": _socket_address(spec.admin)},
        "dynamic_resources": {
            "ads_config": {"api_type": "DELTA_GRPC" if spec.delta else "GRPC",
                           "transport_api_version": "V3",
                           "grpc_services": [service]},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
            "cds_config": {"ads": {}, "resource_api_version": "V3"}},
        "static_resources": {"clusters": [_xds_cluster(spec.servers, spec.xds_ca,
                                                        spec.xds_name, spec.xds_cert,
                                                        spec.xds_key, spec.xds_sds)]},
    }


def _xds_cluster(servers: tuple[tuple[str, int], ...], ca: str = "",
                 name: str = "", cert: str = "", key: str = "", sds: str = ""
                 ) -> dict[str, Any]:
    """The control plane(s): gRPC needs HTTP/2 (Envoy: a cluster used by envoy_grpc must set
    http2_protocol_options). STRICT_DNS so a host name (a Kubernetes Service) resolves."""
    named = any(not _is_ip(host) for host, _ in servers)
    cluster: dict[str, Any] = {
        "name": XDS_CLUSTER, "type": "STRICT_DNS" if named else "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {_H2_OPTIONS: {
            "@type": _H2_TYPE, "explicit_http_config": {"http2_protocol_options": {}}}},
        "load_assignment": {"cluster_name": XDS_CLUSTER, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": _socket_address(server)}} for server in servers]}]},
    }
    if ca:  # `controlplane --tls`: the mesh root verifies the control plane (docs/security.md)
        common: dict[str, Any] = {"validation_context": {"trusted_ca": {"filename": ca}}}
        if cert:  # xDS over mTLS: the sidecar's certificate (istio-agent writes Envoy's too)
            common["tls_certificates"] = [{"certificate_chain": {"filename": cert},
                                           "private_key": {"filename": key}}]
        elif sds:  # Envoy reloads a file-based SDS secret when it is moved into the folder
            common["tls_certificate_sds_secret_configs"] = [{"name": XDS_CLIENT_SECRET,
                                                             "sds_config": _file_source(sds)}]
        cluster["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": _TLS_TYPE, "sni": name, "common_tls_context": common}}
    return cluster


def _file_source(path: str) -> dict[str, Any]:
    """Envoy's filesystem subscription (config_source.proto PathConfigSource): the file is
    reloaded when a file is moved into `watched_directory`."""
    return {"path_config_source": {"path": path,
                                   "watched_directory": {"path": path.rpartition("/")[0]}},
            "resource_api_version": "V3"}


def _socket_address(address: tuple[str, int]) -> dict[str, Any]:
    return {"socket_address": {"address": address[0], "port_value": address[1]}}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
