"""Clusters and endpoints of Service ports.

`outbound|PORT||NAME.NAMESPACE` is the cluster of a Service port as its callers (sidecars and
Gateways) see it, with the BackendTrafficPolicy settings targeting the Service. A route whose
own policies change cluster-level settings (load balancer, health checks, circuit breakers,
connection timeouts, session persistence) sends to a variant, `outbound|PORT|<hash>|NAME.NS`,
that shares the Service's endpoints (EDS service_name is the base cluster's). Endpoints are
the sidecars registered as the Service (their instance_ip, the Service port: a sidecar's
inbound listener), the workloads its `selector` matches (their instance_ip, the port's
targetPort: a workload sidecar's inbound listener, as a pod's address and container port in
Kubernetes) and the Service's EndpointSlices (their addresses and ports: direct). With a mesh
identity, sidecar endpoints carry `envoy.transport_socket_match: {tlsMode: istio}`, which the
cluster's transport_socket_matches read (automatic mTLS per endpoint, compile/mtls.py).

Envoy Gateway's mapping is followed field by field (internal/xds/translator/cluster.go):
LeastRequest by default, ConsistentHash is Maglev with tableSize, connect timeout 10 s.
"""

from __future__ import annotations

import hashlib
from typing import Any

from controlplane.mesh.compile.envoy import HTTP_OPTIONS, HTTP_OPTIONS_KEY, address, seconds
from controlplane.mesh.compile.memo import View
from controlplane.mesh.compile.mtls import SIDECAR_METADATA
from controlplane.mesh.compile.policies import ClusterSettings
from controlplane.mesh.kinds.backendtrafficpolicy import (
    ActiveHealthCheck,
    CircuitBreaker,
    HealthCheck,
    LoadBalancer,
    PassiveHealthCheck,
)
from controlplane.mesh.kinds.endpointslice import EndpointSliceSpec
from controlplane.mesh.objects import MeshObject

DEFAULT_CONNECT_TIMEOUT = 10.0  # Envoy Gateway's default (timeout_types.go TCPTimeout)
LB_POLICIES = {"RoundRobin": "ROUND_ROBIN", "LeastRequest": "LEAST_REQUEST",
               "Random": "RANDOM", "ConsistentHash": "MAGLEV"}
H2_PROTOCOLS = ("grpc", "h2c")


def base_name(namespace: str, name: str, port: int) -> str:
    return f"outbound|{port}||{name}.{namespace}"


def variant_name(namespace: str, name: str, port: int, settings: ClusterSettings) -> str:
    digest = hashlib.blake2b(repr(settings).encode(), digest_size=4).hexdigest()
    return f"outbound|{port}|{digest}|{name}.{namespace}"


def cluster(name: str, eds_name: str, protocol: str, settings: ClusterSettings
            ) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name, "type": "EDS",
        "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"},
                               "service_name": eds_name},
        "connect_timeout": seconds(settings.connect_timeout or DEFAULT_CONNECT_TIMEOUT),
    }
    body.update(load_balancing(settings.load_balancer, settings.session is not None))
    if settings.health_check is not None:
        body.update(health(settings.health_check))
    if settings.circuit_breaker is not None:
        body["circuit_breakers"] = circuit_breakers(settings.circuit_breaker)
    options = protocol_options(protocol, settings.idle_timeout)
    if options is not None:
        body["typed_extension_protocol_options"] = {HTTP_OPTIONS_KEY: options}
    return body


def load_balancing(lb: LoadBalancer | None, session: bool) -> dict[str, Any]:
    if session:  # GEP-1619 by cookie: a consistent hash of the cookie (docs/mesh.md)
        return {"lb_policy": "MAGLEV"}
    kind = lb.kind if lb is not None else "LeastRequest"
    out: dict[str, Any] = {"lb_policy": LB_POLICIES[kind]}
    if lb is not None and lb.consistent_hash is not None:
        out["maglev_lb_config"] = {"table_size": lb.consistent_hash.table_size}
    return out


def protocol_options(protocol: str, idle_timeout: float | None) -> dict[str, Any] | None:
    if protocol not in H2_PROTOCOLS and idle_timeout is None:
        return None
    explicit: dict[str, Any] = {"http2_protocol_options": {}} if protocol in H2_PROTOCOLS \
        else {"http_protocol_options": {}}
    options: dict[str, Any] = {"@type": HTTP_OPTIONS, "explicit_http_config": explicit}
    if idle_timeout is not None:
        options["common_http_protocol_options"] = {"idle_timeout": seconds(idle_timeout)}
    return options


def health(check: HealthCheck) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if check.active is not None:
        out["health_checks"] = [active_check(check.active)]
    if check.passive is not None:
        out["outlier_detection"] = outlier_detection(check.passive)
    if check.panic_threshold is not None:
        out["common_lb_config"] = {"healthy_panic_threshold": {
            "value": float(check.panic_threshold)}}
    return out


def active_check(check: ActiveHealthCheck) -> dict[str, Any]:
    out: dict[str, Any] = {
        "timeout": seconds(check.timeout), "interval": seconds(check.interval),
        "unhealthy_threshold": check.unhealthy_threshold,
        "healthy_threshold": check.healthy_threshold,
    }
    if check.initial_jitter is not None:
        out["initial_jitter"] = seconds(check.initial_jitter)
    if check.kind == "HTTP":
        http: dict[str, Any] = {"path": check.http_path,
                                "expected_statuses": _ranges(check.http_statuses)}
        if check.http_hostname:
            http["host"] = check.http_hostname
        if check.http_method:
            http["method"] = check.http_method
        out["http_health_check"] = http
    elif check.kind == "TCP":
        tcp: dict[str, Any] = {}
        if check.tcp_send:
            tcp["send"] = {"text": check.tcp_send.hex()}
        if check.tcp_receive:
            tcp["receive"] = [{"text": check.tcp_receive.hex()}]
        out["tcp_health_check"] = tcp
    else:
        out["grpc_health_check"] = {"service_name": check.grpc_service} \
            if check.grpc_service else {}
    return out


def _ranges(codes: tuple[int, ...]) -> list[dict[str, int]]:
    """Envoy's expected_statuses are [start, end) ranges."""
    return [{"start": code, "end": code + 1} for code in sorted(set(codes))]


def outlier_detection(check: PassiveHealthCheck) -> dict[str, Any]:
    out: dict[str, Any] = {
        "split_external_local_origin_errors": check.split_external_local_origin_errors,
        "interval": seconds(check.interval),
        "consecutive_local_origin_failure": check.consecutive_local_origin_failures,
        "consecutive_5xx": check.consecutive_5xx,
        "base_ejection_time": seconds(check.base_ejection_time),
        "max_ejection_percent": check.max_ejection_percent,
    }
    if check.consecutive_gateway_errors is not None:
        out["consecutive_gateway_failure"] = check.consecutive_gateway_errors
    if check.failure_percentage_threshold is not None:
        out["failure_percentage_threshold"] = check.failure_percentage_threshold
    return out


def circuit_breakers(breaker: CircuitBreaker) -> dict[str, Any]:
    return {"thresholds": [{
        "max_connections": breaker.max_connections,
        "max_pending_requests": breaker.max_pending_requests,
        "max_requests": breaker.max_parallel_requests,
        "max_retries": breaker.max_parallel_retries}]}


# ---- endpoints --------------------------------------------------------------------------------

def load_assignment(view: View, service: MeshObject, port: int) -> dict[str, Any]:
    """The endpoints of one Service port: its registered sidecars, its selected workloads,
    then its EndpointSlices."""
    endpoints = sidecar_endpoints(view, service, port)
    if view.identity is not None:
        # Automatic mTLS per endpoint: the sidecars' own label (compile/mtls.py).
        for entry in endpoints:
            entry["metadata"] = SIDECAR_METADATA
    spec_port = service.spec.port(port)
    for item in view.slices(service.namespace, service.name):
        endpoints += _slice_endpoints(item.spec, spec_port.name if spec_port else "")
    body: dict[str, Any] = {"cluster_name": base_name(service.namespace, service.name, port)}
    if endpoints:
        body["endpoints"] = [{"lb_endpoints": endpoints}]
    return body


def sidecar_endpoints(view: View, service: MeshObject, port: int) -> list[dict[str, Any]]:
    """The endpoints of one Service port that are sidecars: its registered sidecars and its
    selected workloads."""
    spec_port = service.spec.port(port)
    endpoints: list[dict[str, Any]] = [
        {"endpoint": {"address": address(ip, port)}}
        for ip in view.sidecars(service.namespace, service.name)]
    if service.spec.selector is not None and spec_port is not None:
        endpoints += _workload_endpoints(view, service, spec_port)
    return endpoints


def _workload_endpoints(view: View, service: MeshObject, port: Any) -> list[dict[str, Any]]:
    """Kubernetes' endpoints controller: each selected workload at its address and the
    port's targetPort (a named one looked up in the workload's ports; left out if absent)."""
    out = []
    for workload in view.workloads(service.namespace):
        if not service.spec.selects(dict(workload.labels)):
            continue
        target = port.target_on(dict(workload.ports))
        if target is not None:
            out.append({"endpoint": {"address": address(workload.instance_ip, target)}})
    return out


def _slice_endpoints(spec: EndpointSliceSpec, port_name: str) -> list[dict[str, Any]]:
    """EndpointSlice ports match the Service port by name; a slice without ports has none."""
    ports = [item.port for item in spec.ports if item.name == port_name]
    out = []
    for port in ports:
        for endpoint in spec.endpoints:
            status = "DRAINING" if endpoint.terminating else (
                "UNHEALTHY" if not endpoint.ready else None)
            for ip in endpoint.addresses:
                entry: dict[str, Any] = {"endpoint": {"address": address(ip, port)}}
                if status is not None:
                    entry["health_status"] = status
                out.append(entry)
    return out
