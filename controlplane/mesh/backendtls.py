"""BackendTLSPolicy resolved (backendtlspolicy_types.go, GEP-1897): which policy applies to
each Service port, its status, and the TLS settings the compiler turns into the port's
UpstreamTlsContext.

- A targetRef names a Service in the policy's namespace (another kind: `Accepted=False/
  Invalid`, a missing Service or port name: `Accepted=False/TargetNotFound`). With
  `sectionName` it applies to that port, else to every port of the Service; a port-scoped
  policy wins over a Service-wide one.
- Two policies with the same target and sectionName: the older (creationTimestamp, then
  namespace/name) applies, the other is `Accepted=False/Conflicted`.
- `caCertificateRefs`: a ConfigMap (group "") with PEM certificates under `ca.crt`; another
  kind is `ResolvedRefs=False/InvalidKind`, a missing ConfigMap or one without usable `ca.crt`
  `ResolvedRefs=False/InvalidCACertificateRef`. When none is usable the policy is
  `Accepted=False/NoValidCACertificate`, and the ports it targets are not served (the spec:
  "Connections using an invalid CACertificateRef MUST fail, and the client MUST receive an
  HTTP 5xx error response").
- `wellKnownCACertificates: System`: the system's CA bundle (`SYSTEM_CA_FILE`, read by the
  proxy); another value is `Accepted=False/Invalid`.

The policy applies to Gateways: a Gateway's route to a targeted port sends to a cluster of its
own with the TLS settings (compile/backend_tls.py). Sidecars are left alone (the spec leaves
mesh use to implementations): for them the port carries TLS end to end (protocol `tls`: the
calling app and the backend speak it, the sidecars pass it through).

The status of a policy is listed per ancestor (PolicyStatus): each Gateway with an accepted
route sending to a targeted Service, with the same conditions.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from controlplane.mesh.kinds.backendtlspolicy import BackendTLSPolicySpec, SubjectAltName
from controlplane.mesh.kinds.refs import CORE_GROUP, TargetRef
from controlplane.mesh.objects import MeshObject, ObjectKey

SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"  # Debian/Ubuntu's bundle


@dataclass(frozen=True)
class BackendTls:
    """What a Service port's connections use: `trusted_ca` (PEM) or the system bundle, the SNI
    and names to verify. `usable` False: the policy has no valid CA, the port must fail."""

    policy: ObjectKey
    hostname: str
    trusted_ca: bytes
    system: bool
    subject_alt_names: tuple[SubjectAltName, ...]
    usable: bool = True
    # the objects it was made from (the policy, its ConfigMaps): what a proxy's NACK concerns
    sources: tuple[ObjectKey, ...] = ()
    inner: str = "tcp"  # what runs inside the TLS (the port's protocol as its routes say)
    # the Gateway's spec.tls.backend.clientCertificateRef, presented to the backend
    client_chain: bytes = b""
    client_key: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class Verdict:
    """A policy's own conditions (type, status, reason, message)."""

    accepted: tuple[str, str, str]
    resolved: tuple[str, str, str]


PortKey = tuple[str, str, int]  # namespace, Service, port


def resolve_backend_tls(objects: dict[ObjectKey, MeshObject], policies: list[MeshObject]
                        ) -> tuple[dict[PortKey, BackendTls], dict[ObjectKey, Verdict]]:
    """Per (namespace, Service, port): the TLS settings of the policy that applies; per policy,
    its verdict. `policies` are in precedence order (oldest first)."""
    verdicts: dict[ObjectKey, Verdict] = {}
    scoped: dict[tuple[str, str, str | None], MeshObject] = {}
    for policy in policies:
        settings, resolved = _settings(objects, policy)
        accepted = _place(objects, policy, scoped)
        if accepted[0] == "True" and settings is None:
            accepted = ("False", "NoValidCACertificate", resolved[2])
        if accepted[0] == "True" and policy.spec.well_known not in (None, "System"):
            accepted = ("False", "Invalid", f"wellKnownCACertificates "
                                            f"{policy.spec.well_known!r} is not supported "
                                            "(System is)")
        verdicts[policy.key] = Verdict(accepted, resolved)
    return _by_port(objects, scoped, verdicts), verdicts


def _place(objects: dict[ObjectKey, MeshObject], policy: MeshObject,
           scoped: dict[tuple[str, str, str | None], MeshObject]) -> tuple[str, str, str]:
    """Claim each target (Service, sectionName) for the policy unless an older one has it."""
    problems: list[tuple[str, str, str]] = []
    spec: BackendTLSPolicySpec = policy.spec
    for target in spec.targets:
        problem = _target_problem(objects, policy, target)
        if problem is None:
            key = (policy.namespace, target.name, target.section_name)
            rival = scoped.get(key)
            if rival is None:
                scoped[key] = policy
                continue
            problem = ("False", "Conflicted", f"{rival.label} already targets "
                                              f"{target.describe(policy.namespace)}")
        problems.append(problem)
    if problems and len(problems) == len(spec.targets):
        return problems[0]
    return ("True", "Accepted", "; ".join(item[2] for item in problems))


def _target_problem(objects: dict[ObjectKey, MeshObject], policy: MeshObject,
                    target: TargetRef) -> tuple[str, str, str] | None:
    if target.group != CORE_GROUP or target.kind != "Service":
        return ("False", "Invalid", f"a BackendTLSPolicy targets Services, not "
                                    f"{target.group or 'core'}/{target.kind}")
    service = objects.get(ObjectKey("Service", policy.namespace, target.name))
    if service is None:
        return ("False", "TargetNotFound", f"{target.describe(policy.namespace)} does not exist")
    if target.section_name and service.spec.port_named(target.section_name) is None:
        return ("False", "TargetNotFound", f"{service.label} has no port named "
                                           f"{target.section_name!r}")
    return None


def _settings(objects: dict[ObjectKey, MeshObject], policy: MeshObject
              ) -> tuple[BackendTls | None, tuple[str, str, str]]:
    """The policy's TLS settings (None when no CA is usable) and its ResolvedRefs."""
    spec: BackendTLSPolicySpec = policy.spec
    bundles: list[bytes] = []
    problem: tuple[str, str, str] | None = None
    for ref in spec.ca_refs:
        if ref.group != CORE_GROUP or ref.kind != "ConfigMap":
            found = ("False", "InvalidKind", f"caCertificateRefs {ref.group or 'core'}/"
                                             f"{ref.kind} {ref.name}: only ConfigMaps are "
                                             "supported")
        else:
            bundle, found = _ca(objects, policy.namespace, ref.name)
            if bundle:
                bundles.append(bundle)
                continue
        problem = problem or found
    resolved = problem or ("True", "ResolvedRefs", "")
    if spec.well_known is None and not bundles:
        return None, resolved
    sources = (policy.key, *(ObjectKey("ConfigMap", policy.namespace, ref.name)
                             for ref in spec.ca_refs if ref.kind == "ConfigMap"))
    return BackendTls(policy.key, spec.hostname, b"".join(bundles),
                      spec.well_known == "System", spec.subject_alt_names,
                      sources=sources), resolved


def _ca(objects: dict[ObjectKey, MeshObject], namespace: str, name: str
        ) -> tuple[bytes, tuple[str, str, str]]:
    found = objects.get(ObjectKey("ConfigMap", namespace, name))
    if found is None:
        return b"", ("False", "InvalidCACertificateRef",
                     f"ConfigMap {namespace}/{name} does not exist")
    bundle, why = found.spec.ca_bundle()
    return bundle, ("False", "InvalidCACertificateRef", f"ConfigMap {namespace}/{name} {why}")


def _by_port(objects: dict[ObjectKey, MeshObject],
             scoped: dict[tuple[str, str, str | None], MeshObject],
             verdicts: dict[ObjectKey, Verdict]) -> dict[tuple[str, str, int], BackendTls]:
    """A port's policy: the one naming its port (sectionName) over the Service-wide one."""
    out: dict[tuple[str, str, int], BackendTls] = {}
    for (namespace, name, section), policy in sorted(
            scoped.items(), key=lambda item: item[0][2] is not None):
        service = objects[ObjectKey("Service", namespace, name)]
        settings, _ = _settings(objects, policy)
        if settings is None or verdicts[policy.key].accepted[0] != "True":
            settings = BackendTls(policy.key, policy.spec.hostname, b"", False, (), usable=False,
                                  sources=(policy.key,))
        for port in service.spec.ports:
            if section is None or port.name == section:
                out[(namespace, name, port.port)] = settings
    return out


def ancestors(backends: dict[tuple[str, str], set[ObjectKey]], policy: MeshObject
              ) -> list[ObjectKey]:
    """The Gateways through which a policy applies: those whose routes send to its targets."""
    found: set[ObjectKey] = set()
    for target in policy.spec.targets:
        found |= backends.get((policy.namespace, target.name), set())
    return sorted(found)


def gateway_backends(attachments: dict[ObjectKey, list], backends: dict) -> dict[
        tuple[str, str], set[ObjectKey]]:
    """(namespace, Service) -> the Gateways with an accepted route sending to it."""
    gateways: dict[ObjectKey, set[ObjectKey]] = defaultdict(set)
    for route, found in attachments.items():
        for item in found:
            if item.accepted and item.parent is not None and item.parent.kind == "Gateway":
                gateways[route].add(item.parent)
    out: dict[tuple[str, str], set[ObjectKey]] = defaultdict(set)
    for (route, _rule, _index), backend in backends.items():
        if backend.ok and backend.service is not None and route in gateways:
            out[(backend.service.namespace, backend.service.name)] |= gateways[route]
    return out
