"""Which Istio security policies apply to a Service's sidecars (istio/api
security/v1beta1/peer_authentication.proto and authorization.proto; Istio's docs,
"Authentication policy" and "Authorization policy" concepts).

PeerAuthentication: the most specific policy decides, port by port: a workload policy (the
Service's namespace, a selector matching the Service's labels), then the namespace policy (no
selector), then the mesh policy (the root namespace, no selector); a level whose mode is
UNSET passes to the next; none: PERMISSIVE. Several policies at one level: the oldest wins
(Istio's rule), the others are reported.

AuthorizationPolicy: every policy of the mesh (root namespace, no selector), of the Service's
namespace (no selector) and of its namespace whose selector matches applies; a root-namespace
policy with a selector applies to the matching workloads of every namespace (Istio).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from controlplane.mesh.identity import ROOT_NAMESPACE
from controlplane.mesh.kinds.istio import selects
from controlplane.mesh.objects import MeshObject

DEFAULT_MODE = "PERMISSIVE"


@dataclass(frozen=True)
class PortMode:
    """The mTLS mode of one workload port and the policy that set it (None: the default)."""

    mode: str
    source: MeshObject | None = None

    @property
    def label(self) -> str:
        return self.source.label if self.source is not None else "default"


def peer_policies(policies: Iterable[MeshObject], service: MeshObject,
                  root: str = ROOT_NAMESPACE) -> list[MeshObject]:
    """The PeerAuthentications that may decide for `service`, most specific first (within a
    level: oldest first, as `policies` comes from `Mesh.of_kind`)."""
    workload, namespace, mesh = [], [], []
    for policy in policies:
        selector = policy.spec.selector
        if policy.namespace == service.namespace and selector is not None:
            if selects(selector, service.meta.labels):
                workload.append(policy)
        elif policy.namespace == service.namespace:
            namespace.append(policy)
        elif policy.namespace == root and selector is None:
            mesh.append(policy)
    return [*workload[:1], *namespace[:1], *mesh[:1]]


def port_mode(policies: Iterable[MeshObject], service: MeshObject, target_port: int,
              root: str = ROOT_NAMESPACE) -> PortMode:
    for policy in peer_policies(policies, service, root):
        mode = policy.spec.mode_for(target_port)
        if mode != "UNSET":
            return PortMode(mode, policy)
    return PortMode(DEFAULT_MODE)


def shadowed_peer_policies(policies: list[MeshObject], root: str = ROOT_NAMESPACE
                           ) -> list[tuple[MeshObject, MeshObject]]:
    """(ignored, winner) pairs: a second namespace-wide or mesh-wide policy."""
    seen: dict[str, MeshObject] = {}
    out = []
    for policy in policies:
        if policy.spec.selector is not None:
            continue
        if policy.namespace in seen:
            out.append((policy, seen[policy.namespace]))
        else:
            seen[policy.namespace] = policy
    return out


def authorization_policies(policies: Iterable[MeshObject], service: MeshObject,
                           root: str = ROOT_NAMESPACE) -> list[MeshObject]:
    """The AuthorizationPolicies that apply to `service`'s sidecars, in a stable order
    (namespace, name)."""
    found = []
    for policy in policies:
        selector = policy.spec.selector
        if policy.namespace == root and (selector is None
                                         or selects(selector, service.meta.labels)):
            found.append(policy)
        elif policy.namespace == service.namespace and selects(selector, service.meta.labels):
            found.append(policy)
    return sorted(found, key=lambda item: (item.namespace, item.name))
