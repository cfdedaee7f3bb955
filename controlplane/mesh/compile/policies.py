"""Which policy settings apply where: each field of a BackendTrafficPolicy comes from the most
specific policy that sets it, in the order route rule (targetRef sectionName) > route >
Gateway (for its routes) > Service (as a backend). Envoy Gateway replaces a less specific
policy as a whole by default; field by field keeps a Service's health checks when a route
only adds retries, which is what a mesh needs (docs/mesh.md, "Policy precedence")."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.mesh.backendtls import BackendTls
from controlplane.mesh.compile.memo import View
from controlplane.mesh.kinds.backendtrafficpolicy import (
    BackendTrafficPolicySpec,
    CircuitBreaker,
    FaultInjection,
    HealthCheck,
    LoadBalancer,
    LocalRateLimit,
    RetryPolicy,
)
from controlplane.mesh.kinds.filters import SessionPersistence
from controlplane.mesh.objects import MeshObject, ObjectKey

BTP = "BackendTrafficPolicy"
SP = "SecurityPolicy"
CTP = "ClientTrafficPolicy"


@dataclass(frozen=True)
class TrafficSettings:
    """A merged BackendTrafficPolicy; `sources` names the policies that contributed."""

    load_balancer: LoadBalancer | None = None
    health_check: HealthCheck | None = None
    circuit_breaker: CircuitBreaker | None = None
    retry: RetryPolicy | None = None
    connect_timeout: float | None = None
    idle_timeout: float | None = None
    request_timeout: float | None = None
    rate_limit: LocalRateLimit | None = None
    fault: FaultInjection | None = None
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterSettings:
    """What makes one cluster of a Service port differ from another (a variant)."""

    load_balancer: LoadBalancer | None = None
    health_check: HealthCheck | None = None
    circuit_breaker: CircuitBreaker | None = None
    connect_timeout: float | None = None
    idle_timeout: float | None = None
    session: SessionPersistence | None = None
    backend_tls: BackendTls | None = None  # a Gateway's route to a BackendTLSPolicy's port


def merge(policies: list[MeshObject | None]) -> TrafficSettings:
    """Most specific first."""
    found = [policy for policy in policies if policy is not None]
    specs: list[BackendTrafficPolicySpec] = [policy.spec for policy in found]

    def first(pick):  # type: ignore[no-untyped-def]
        return next((value for value in map(pick, specs) if value is not None), None)
    return TrafficSettings(
        load_balancer=first(lambda spec: spec.load_balancer),
        health_check=first(lambda spec: spec.health_check),
        circuit_breaker=first(lambda spec: spec.circuit_breaker),
        retry=first(lambda spec: spec.retry),
        connect_timeout=first(lambda spec: spec.timeout and spec.timeout.connect_timeout),
        idle_timeout=first(lambda spec: spec.timeout and spec.timeout.connection_idle_timeout),
        request_timeout=first(lambda spec: spec.timeout and spec.timeout.request_timeout),
        rate_limit=first(lambda spec: spec.rate_limit),
        fault=first(lambda spec: spec.fault),
        sources=tuple(policy.label for policy in found))


def cluster_settings(traffic: TrafficSettings, session: SessionPersistence | None = None
                     ) -> ClusterSettings:
    return ClusterSettings(traffic.load_balancer, traffic.health_check,
                           traffic.circuit_breaker, traffic.connect_timeout,
                           traffic.idle_timeout, session)


def service_policy(view: View, service: MeshObject, port_name: str, kind: str = BTP
                   ) -> MeshObject | None:
    """The policy of `kind` on a Service (a port-scoped one, sectionName = port name, first)."""
    return view.policy(kind, service.key, port_name or None) if port_name \
        else view.policy(kind, service.key)


def service_traffic(view: View, service: MeshObject, port_name: str) -> TrafficSettings:
    return merge([service_policy(view, service, port_name)])


def route_policies(view: View, route: MeshObject, rule_name: str | None,
                   gateway: ObjectKey | None = None, listener: str | None = None,
                   kind: str = BTP) -> list[MeshObject | None]:
    """Policies on a route rule, the route and (for an edge route) its Gateway listener and
    Gateway, most specific first."""
    found: list[MeshObject | None] = []
    if rule_name:
        found.append(view.policy(kind, route.key, rule_name))
    found.append(view.policy(kind, route.key))
    if gateway is not None:
        if listener:
            found.append(view.policy(kind, gateway, listener))
        found.append(view.policy(kind, gateway))
    unique: list[MeshObject | None] = []
    for policy in found:
        if policy is None or all(policy is not other for other in unique):
            unique.append(policy)
    return unique
