"""The meaning of a set of objects: what attaches to what, what every reference resolves to,
each object's conditions. Built once per mesh version (O(objects)); the compiler, `analyze`,
`explain` and status all read this one `Mesh`.

Gateway API rules followed here (apis/v1 shared_types.go, gateway_types.go; GAMMA,
site-src/mesh/index.md):
- a route attaches to a Service (group "" or "core", kind Service): a producer route when in
  the Service's namespace (applies to every caller), a consumer route otherwise (applies to
  callers in the route's namespace, which then ignore the producer routes); `port` or
  `sectionName` (the port's name) pick one port, else every port the route kind fits;
- a route attaches to a Gateway's listeners that allow its kind and namespace and whose
  hostname intersects the route's; `sectionName` and `port` narrow the listeners;
- a backendRef to a Service in another namespace needs a ReferenceGrant (RefNotPermitted)
  when the route attaches to a Gateway (mesh routes do not: see `_edge_route`);
  a missing Service or port is BackendNotFound, another kind InvalidKind, a port whose
  appProtocol the route kind cannot carry UnsupportedProtocol;
- listeners that are not distinct (same port: TCP with anything, HTTP with HTTPS, or the
  same protocol and hostname) are Conflicted and not served;
- when two policies of one kind target the same object, the older one (creationTimestamp,
  then namespace/name) applies and the other is Conflicted (Envoy Gateway's rule).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from controlplane.mesh.backendtls import (
    BackendTls,
    ancestors,
    gateway_backends,
    resolve_backend_tls,
)
from controlplane.mesh.errors import Problem
from controlplane.mesh.hostnames import effective
from controlplane.mesh.kinds.endpointslice import SERVICE_NAME_LABEL
from controlplane.mesh.kinds.gateway import DEFAULT_KINDS, CaRef, GatewayListener, GatewaySpec
from controlplane.mesh.kinds.refs import (
    CORE_GROUP,
    GATEWAY_GROUP,
    BackendRef,
    ParentRef,
    SecretRef,
)
from controlplane.mesh.kinds.service import ServicePort, ServiceSpec
from controlplane.mesh.listenersets import (
    admitted,
    merged_name,
    parent_of,
    with_listener_sets,
)
from controlplane.mesh.objects import MeshObject, ObjectKey

ROUTE_KINDS = ("HTTPRoute", "GRPCRoute", "TCPRoute", "TLSRoute")
POLICY_KINDS = ("BackendTrafficPolicy", "SecurityPolicy", "ClientTrafficPolicy")
HTTP_FAMILY = ("http", "h2c", "grpc")
# Which declared port protocols a route kind can carry (as a parent or a backend).
FITS = {
    "HTTPRoute": ("http", "h2c", "grpc", None),
    "GRPCRoute": ("grpc", "h2c", None),
    "TCPRoute": ("tcp", "tls", "opaque", "http", "h2c", "grpc", None),
    # The bytes a TLSRoute carries are the backend's own: still encrypted (Passthrough) or
    # decrypted by the Gateway (Terminate), where an HTTP server behind it is the usual case.
    "TLSRoute": ("tls", "tcp", "opaque", "http", "h2c", "grpc", None),
}
PARENT_FITS = {
    "HTTPRoute": ("http", "h2c", "grpc", None),
    "GRPCRoute": ("grpc", "h2c", None),
    "TCPRoute": ("tcp", "opaque", "tls", None),
    "TLSRoute": (),  # a TLSRoute attaches to Gateway TLS listeners only
}
POLICY_TARGETS = {
    "BackendTrafficPolicy": {(CORE_GROUP, "Service"), (GATEWAY_GROUP, "Gateway"),
                             (GATEWAY_GROUP, "HTTPRoute"), (GATEWAY_GROUP, "GRPCRoute"),
                             (GATEWAY_GROUP, "TCPRoute"), (GATEWAY_GROUP, "TLSRoute")},
    "SecurityPolicy": {(CORE_GROUP, "Service"), (GATEWAY_GROUP, "Gateway"),
                       (GATEWAY_GROUP, "HTTPRoute"), (GATEWAY_GROUP, "GRPCRoute")},
    "ClientTrafficPolicy": {(GATEWAY_GROUP, "Gateway")},
}


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False"
    reason: str
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "True"


@dataclass(frozen=True)
class Attachment:
    """One parentRef of a route, resolved."""

    route: MeshObject
    index: int  # in spec.parentRefs
    ref: ParentRef
    parent: ObjectKey | None
    accepted: bool
    reason: str
    message: str = ""
    ports: tuple[int, ...] = ()  # Service parent: the ports it applies to
    listeners: tuple[tuple[str, tuple[str, ...]], ...] = ()  # Gateway: (listener, hostnames)

    @property
    def consumer(self) -> bool:
        """A route on a Service of another namespace (GAMMA consumer route)."""
        return self.parent is not None and self.parent.kind == "Service" and \
            self.parent.namespace != self.route.namespace


@dataclass(frozen=True)
class Backend:
    """One backendRef, resolved: `service` and `port` are set when it is usable."""

    ref: BackendRef
    ok: bool
    reason: str
    message: str = ""
    service: MeshObject | None = None
    port: ServicePort | None = None

    @property
    def cluster_key(self) -> tuple[str, str, int] | None:
        if self.service is None or self.port is None:
            return None
        return (self.service.namespace, self.service.name, self.port.port)


@dataclass(frozen=True)
class PolicyTarget:
    policy: MeshObject
    index: int  # in spec.targetRefs
    target: ObjectKey
    section: str | None


@dataclass
class Mesh:
    """A resolved set of objects. Lookups are plain dictionaries built in `resolve()`."""

    objects: dict[ObjectKey, MeshObject] = field(default_factory=dict)
    by_kind: dict[str, list[MeshObject]] = field(default_factory=lambda: defaultdict(list))
    slices: dict[tuple[str, str], list[MeshObject]] = field(
        default_factory=lambda: defaultdict(list))
    attachments: dict[ObjectKey, list[Attachment]] = field(
        default_factory=lambda: defaultdict(list))
    on_service_port: dict[tuple[str, str, int], list[Attachment]] = field(
        default_factory=lambda: defaultdict(list))
    on_listener: dict[tuple[ObjectKey, str], list[Attachment]] = field(
        default_factory=lambda: defaultdict(list))
    backends: dict[tuple[ObjectKey, int, int], Backend] = field(default_factory=dict)
    mirrors: dict[tuple[ObjectKey, int, int], Backend] = field(default_factory=dict)
    listener_conditions: dict[tuple[ObjectKey, str], list[Condition]] = field(
        default_factory=lambda: defaultdict(list))
    policies: dict[ObjectKey, list[PolicyTarget]] = field(
        default_factory=lambda: defaultdict(list))
    conditions: dict[ObjectKey, list[Condition]] = field(
        default_factory=lambda: defaultdict(list))
    port_protocols: dict[tuple[str, str, int], str] = field(default_factory=dict)
    by_port: dict[int, list[MeshObject]] = field(default_factory=lambda: defaultdict(list))
    problems: list[Problem] = field(default_factory=list)
    # BackendTLSPolicy: the TLS a Service port's connections use (controlplane.mesh.backendtls)
    backend_tls: dict[tuple[str, str, int], BackendTls] = field(default_factory=dict)
    # spec.tls.frontend for an HTTPS listener: (the CA bundle, the mode) when some CA resolves
    frontend_validation: dict[tuple[ObjectKey, str], tuple[bytes, str]] = field(
        default_factory=dict)
    # ListenerSets: the accepted ones of each Gateway (precedence order), and each one's Gateway
    listener_sets: dict[ObjectKey, list[ObjectKey]] = field(
        default_factory=lambda: defaultdict(list))
    listener_set_parent: dict[ObjectKey, ObjectKey] = field(default_factory=dict)
    # a Gateway's spec.tls.backend.clientCertificateRef when it resolves: (chain, key)
    client_certificates: dict[ObjectKey, tuple[bytes, bytes]] = field(default_factory=dict)
    # a policy's ancestors (PolicyStatus): the Gateways its targets are reached through
    policy_ancestors: dict[ObjectKey, list[ObjectKey]] = field(default_factory=dict)

    # ---- lookups ----------------------------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str) -> MeshObject | None:
        return self.objects.get(ObjectKey(kind, namespace, name))

    def service(self, namespace: str, name: str) -> MeshObject | None:
        return self.get("Service", namespace, name)

    def of_kind(self, kind: str) -> list[MeshObject]:
        return self.by_kind.get(kind, [])

    def services_with_port(self, port: int) -> list[MeshObject]:
        """Services with that port number, by namespace/name."""
        return self.by_port.get(port, [])

    def ports_in_use(self) -> tuple[int, ...]:
        return tuple(sorted(self.by_port))

    def protocol(self, namespace: str, name: str, port: int) -> str:
        """The port's protocol as the mesh carries it: http, h2c, grpc, tcp, tls, opaque."""
        return self.port_protocols.get((namespace, name, port), "tcp")

    def policy_for(self, kind: str, target: ObjectKey, section: str | None = None
                   ) -> MeshObject | None:
        """The policy of `kind` that applies to `target` (a section-scoped one wins over a
        whole-object one, as in Envoy Gateway)."""
        found = [item for item in self.policies.get(target, [])
                 if item.policy.kind == kind and item.section in (section, None)]
        found.sort(key=lambda item: item.section is None)
        return found[0].policy if found else None

    def accepted(self, route: MeshObject) -> list[Attachment]:
        return [item for item in self.attachments.get(route.key, []) if item.accepted]


def resolve(objects: Iterable[MeshObject]) -> Mesh:
    mesh = Mesh()
    for obj in objects:
        if obj.key in mesh.objects:
            first = mesh.objects[obj.key]
            mesh.problems.append(Problem(
                "error", "Duplicate", f"{obj.label} is defined twice (first at "
                                      f"{first.location()})", obj.location()))
            continue
        mesh.objects[obj.key] = obj
        mesh.by_kind[obj.kind].append(obj)
    for items in mesh.by_kind.values():
        items.sort(key=precedence_key)
    _index_slices(mesh)
    addresses: dict[str, MeshObject] = {}
    for service in sorted(mesh.of_kind("Service"), key=lambda item: (item.namespace, item.name)):
        for port in service.spec.ports:
            mesh.by_port[port.port].append(service)
        address = service.spec.cluster_ip
        if address is not None and address in addresses:  # one virtual host domain each
            mesh.problems.append(Problem(
                "error", "Duplicate", f"clusterIP {address} is also "
                                      f"{addresses[address].label}'s", service.location(
                                          ("spec", "clusterIP"))))
        elif address is not None:
            addresses[address] = service
    _merge_listener_sets(mesh)
    _check_gateways(mesh)
    mesh.backend_tls, verdicts = resolve_backend_tls(mesh.objects,
                                                     mesh.of_kind("BackendTLSPolicy"))
    for kind in ROUTE_KINDS:
        for route in mesh.of_kind(kind):
            _attach(mesh, route)
    _infer_protocols(mesh)
    for key, settings in mesh.backend_tls.items():  # sidecars pass the TLS through
        mesh.backend_tls[key] = replace(settings, inner=mesh.port_protocols.get(key, "tcp"))
        mesh.port_protocols[key] = "tls"
    for kind in ROUTE_KINDS:
        for route in mesh.of_kind(kind):
            _route_conditions(mesh, route, _resolve_backends(mesh, route))
    for kind in POLICY_KINDS:
        for policy in mesh.of_kind(kind):
            _target(mesh, policy)
    reach = gateway_backends(mesh.attachments, mesh.backends)
    for policy in mesh.of_kind("BackendTLSPolicy"):
        verdict = verdicts[policy.key]
        mesh.conditions[policy.key] += [Condition("Accepted", *verdict.accepted),
                                        Condition("ResolvedRefs", *verdict.resolved)]
        mesh.policy_ancestors[policy.key] = ancestors(reach, policy)
    return mesh


def declared(mesh: Mesh, service: MeshObject, port: ServicePort) -> str | None:
    """A port's appProtocol as the mesh reads it. Behind a BackendTLSPolicy the port's TLS is
    the proxy's business (appProtocol `HTTPS`, `tls`, ...): what runs inside is told by the
    routes, as for a port without appProtocol."""
    found = port.declared
    if found in ("opaque", "tls") and (service.namespace, service.name,
                                       port.port) in mesh.backend_tls:
        return None
    return found


def precedence_key(obj: MeshObject) -> tuple[int, str, str, str]:
    """Oldest first (creationTimestamp; none sorts last), then namespace/name."""
    stamp = obj.meta.creation_timestamp
    return (0 if stamp else 1, stamp, obj.namespace, obj.name)


def _index_slices(mesh: Mesh) -> None:
    for item in mesh.of_kind("EndpointSlice"):
        service = item.meta.labels.get(SERVICE_NAME_LABEL)
        if not service:
            mesh.problems.append(Problem(
                "warning", "NoService", f"EndpointSlice has no {SERVICE_NAME_LABEL!r} label: "
                                        "it belongs to no Service", item.location(
                                            ("metadata", "labels"))))
            continue
        mesh.slices[(item.namespace, service)].append(item)


# ---- gateways ---------------------------------------------------------------------------------

def _merge_listener_sets(mesh: Mesh) -> None:
    """Accept each ListenerSet its Gateway admits, and serve its listeners with the
    Gateway's (controlplane.mesh.listenersets)."""
    for listener_set in mesh.of_kind("ListenerSet"):  # oldest first
        parent = parent_of(listener_set)
        gateway = mesh.objects.get(parent) if parent is not None else None
        if gateway is None:
            mesh.conditions[listener_set.key].append(Condition(
                "Accepted", "False", "NotAllowed", "its parentRef names no Gateway"))
            continue
        if not admitted(gateway, listener_set, namespace_labels(mesh, listener_set.namespace)):
            mesh.conditions[listener_set.key].append(Condition(
                "Accepted", "False", "NotAllowed", f"{gateway.label} does not allow "
                f"ListenerSets from namespace {listener_set.namespace} (allowedListeners)"))
            continue
        mesh.listener_sets[gateway.key].append(listener_set.key)
        mesh.listener_set_parent[listener_set.key] = gateway.key
    for key, sets in mesh.listener_sets.items():
        merged = with_listener_sets(mesh.objects[key], [mesh.objects[item] for item in sets])
        mesh.objects[key] = merged
        found = mesh.by_kind["Gateway"]
        found[next(index for index, item in enumerate(found) if item.key == key)] = merged


def _check_gateways(mesh: Mesh) -> None:
    for gateway in mesh.of_kind("Gateway"):
        spec: GatewaySpec = gateway.spec
        own = tuple(item for item in spec.listeners if item.origin is None)
        conflicted = _conflicts(tuple(item for item in own if item.supported_protocol))
        invalid = {item.name: ("UnsupportedProtocol", f"protocol {item.protocol} is not "
                                                      f"supported (HTTP, HTTPS, TLS, TCP are)")
                   for item in spec.listeners if not item.supported_protocol}
        conflicted.update(_later_conflicts(spec, own, conflicted, invalid))
        for listener in spec.listeners:
            mesh.listener_conditions[(gateway.key, listener.name)] += _listener_conditions(
                mesh, gateway, listener, invalid.get(listener.name) or conflicted.get(
                    listener.name), listener.name in conflicted)
        mesh.conditions[gateway.key] += _gateway_conditions(mesh, gateway, {
            name: found for name, found in {**conflicted, **invalid}.items()
            if spec.listener(name) in own})
    for listener_set in mesh.of_kind("ListenerSet"):
        if listener_set.key in mesh.listener_set_parent:
            mesh.conditions[listener_set.key].append(_listener_set_accepted(mesh, listener_set))


def _later_conflicts(spec: GatewaySpec, own: tuple[GatewayListener, ...],
                     conflicted: dict[str, tuple[str, str]],
                     invalid: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """ListenerSet listeners, in precedence order, against every listener kept before them:
    the later one of a conflicting pair is Conflicted (listenerset_types.go)."""
    kept = [item for item in own if item.name not in conflicted and item.name not in invalid]
    out: dict[str, tuple[str, str]] = {}
    for listener in spec.listeners:
        if listener.origin is None or listener.name in invalid:
            continue
        found = _conflicts((*kept, listener)).get(listener.name)
        if found is not None:
            out[listener.name] = found
            continue
        kept.append(listener)
    return out


def _listener_set_accepted(mesh: Mesh, listener_set: MeshObject) -> Condition:
    gateway = mesh.listener_set_parent[listener_set.key]
    names = [merged_name(listener_set.key, item.name) for item in listener_set.spec.listeners]
    bad = [name for name in names if not listener_ready(mesh, gateway, name)]
    if not all(item.ok for item in mesh.conditions.get(gateway, []) if item.type == "Accepted"):
        return Condition("Accepted", "False", "ParentNotAccepted",
                         f"{gateway.kind} {gateway.namespace}/{gateway.name} is not accepted")
    if len(bad) == len(names):
        return Condition("Accepted", "False", "ListenersNotValid", "no listener is valid")
    if bad:
        return Condition("Accepted", "True", "ListenersNotValid",
                         "invalid listeners: " + ", ".join(name.rsplit("/", 1)[1]
                                                           for name in bad))
    return Condition("Accepted", "True", "Accepted")


def _listener_conditions(mesh: Mesh, gateway: MeshObject, listener: GatewayListener,
                         problem: tuple[str, str] | None, conflicted: bool) -> list[Condition]:
    if problem is not None:
        out = [Condition("Accepted", "False", problem[0], problem[1])]
        if conflicted:
            out.insert(0, Condition("Conflicted", "True", problem[0], problem[1]))
        return out
    out = [Condition("Accepted", "True", "Accepted"),
           Condition("Conflicted", "False", "NoConflicts")]
    refs = _certificate_refs(mesh, gateway, listener)
    invalid_kinds = [kind for kind in listener.allowed_kinds
                     if kind not in supported_kinds(listener)]
    if refs.ok and invalid_kinds:
        refs = Condition("ResolvedRefs", "False", "InvalidRouteKinds",
                         f"listener protocol {listener.protocol} cannot serve "
                         f"{', '.join(kind for _, kind in invalid_kinds)}")
    frontend = _frontend_validation(mesh, gateway, listener)
    if frontend is not None and refs.ok and not frontend[0].ok:
        refs = frontend[0]
    if frontend is not None and not frontend[1]:
        out[0] = Condition("Accepted", "False", "NoValidCACertificate", frontend[0].message)
    return [*out, refs]


def _frontend_validation(mesh: Mesh, gateway: MeshObject, listener: GatewayListener
                         ) -> tuple[Condition, bool] | None:
    """spec.tls.frontend for an HTTPS listener (FrontendTLSValidation): its ResolvedRefs and
    whether some CA resolved; the CAs kept for the compiler. A missing ConfigMap or one
    without usable `ca.crt`: InvalidCACertificateRef; another kind: InvalidCACertificateKind;
    another namespace without a ReferenceGrant: RefNotPermitted."""
    frontend = gateway.spec.frontend
    validation = frontend.for_port(listener.port) if frontend is not None else None
    if validation is None or listener.protocol != "HTTPS":
        return None
    bundles: list[bytes] = []
    problem: Condition | None = None
    for ref in validation.ca_refs:
        found = _frontend_ca(mesh, gateway, ref)
        if isinstance(found, bytes):
            bundles.append(found)
        else:
            problem = problem or found
    if bundles:
        mesh.frontend_validation[(gateway.key, listener.name)] = (b"".join(bundles),
                                                                 validation.mode)
    return problem or Condition("ResolvedRefs", "True", "ResolvedRefs"), bool(bundles)


def _frontend_ca(mesh: Mesh, gateway: MeshObject, ref: CaRef) -> bytes | Condition:
    namespace = ref.namespace or gateway.namespace
    if ref.group != CORE_GROUP or ref.kind != "ConfigMap":
        return Condition("ResolvedRefs", "False", "InvalidCACertificateKind",
                         f"caCertificateRefs {ref.group or 'core'}/{ref.kind} {ref.name}: only "
                         "ConfigMaps are supported")
    if namespace != gateway.namespace and not granted(
            mesh, GATEWAY_GROUP, "Gateway", gateway.namespace, CORE_GROUP, "ConfigMap",
            namespace, ref.name):
        return Condition("ResolvedRefs", "False", "RefNotPermitted",
                         f"no ReferenceGrant in {namespace} lets Gateways of "
                         f"{gateway.namespace} use ConfigMap {ref.name}")
    found = mesh.get("ConfigMap", namespace, ref.name)
    if found is None:
        return Condition("ResolvedRefs", "False", "InvalidCACertificateRef",
                         f"ConfigMap {namespace}/{ref.name} does not exist")
    bundle, why = found.spec.ca_bundle()
    return bundle or Condition("ResolvedRefs", "False", "InvalidCACertificateRef",
                               f"ConfigMap {namespace}/{ref.name} {why}")


def supported_kinds(listener: GatewayListener) -> tuple[tuple[str, str], ...]:
    """The route kinds of allowedRoutes (or the protocol's default) the listener serves: its
    status supportedKinds (empty for a listener whose protocol is not served)."""
    if not listener.supported_protocol:
        return ()
    serves = {(GATEWAY_GROUP, kind) for kind in DEFAULT_KINDS[listener.protocol]}
    return tuple(kind for kind in listener.allowed_kinds if kind in serves)


def _gateway_conditions(mesh: Mesh, gateway: MeshObject,
                        invalid: dict[str, tuple[str, str]]) -> list[Condition]:
    """The Gateway's Accepted (and ResolvedRefs when its own references fail; the listeners'
    are summed up by status): gateway_types.go GatewayConditionReason."""
    spec: GatewaySpec = gateway.spec
    out = []
    refs = _client_certificate(mesh, gateway)
    if refs is not None:
        out.append(refs)
    out += _insecure_frontend(spec)
    parameters = spec.infrastructure.parameters
    if parameters is not None:
        return [Condition("Accepted", "False", "InvalidParameters",
                          f"parametersRef {parameters.group}/{parameters.kind} "
                          f"{parameters.name}: Pointsman takes no Gateway parameters"), *out]
    if spec.unsupported_addresses:
        first = spec.unsupported_addresses[0]
        return [Condition("Accepted", "False", "UnsupportedAddress",
                          f"address type {first.type!r} is not supported (IPAddress is)"), *out]
    if invalid:
        accepted = any(item.name not in invalid for item in spec.listeners)
        return [Condition("Accepted", "True" if accepted else "False", "ListenersNotValid",
                          "invalid listeners: " + ", ".join(
                              f"{name} ({reason})" for name, (reason, _) in sorted(
                                  invalid.items()))), *out]
    return [Condition("Accepted", "True", "Accepted"), *out]


def _insecure_frontend(spec: GatewaySpec) -> list[Condition]:
    """GatewayConditionInsecureFrontendValidationMode: True (ConfigurationChanged) while some
    frontend validation is AllowInsecureFallback."""
    frontend = spec.frontend
    if frontend is None:
        return []
    modes = [item.mode for item in (frontend.default, *(tls for _, tls in frontend.per_port))
             if item is not None]
    if "AllowInsecureFallback" not in modes:
        return []
    return [Condition("InsecureFrontendValidationMode", "True", "ConfigurationChanged",
                      "client certificates are not required (AllowInsecureFallback)")]


def _client_certificate(mesh: Mesh, gateway: MeshObject) -> Condition | None:
    """spec.tls.backend.clientCertificateRef (GatewayBackendTLS): ResolvedRefs=False with
    InvalidClientCertificateRef or RefNotPermitted when it cannot be used."""
    ref = gateway.spec.backend_client_certificate
    if ref is None:
        return None
    problem = _secret_problem(mesh, gateway, ref, "InvalidClientCertificateRef")
    if problem is not None:
        return Condition("ResolvedRefs", "False", *problem)
    secret = mesh.get("Secret", ref.namespace or gateway.namespace, ref.name)
    assert secret is not None
    mesh.client_certificates[gateway.key] = (secret.spec.certificate_chain,
                                             secret.spec.private_key)
    return None


def _secret_problem(mesh: Mesh, gateway: MeshObject, ref: SecretRef, invalid: str,
                    owner: ObjectKey | None = None) -> tuple[str, str] | None:
    """Why a Gateway's (or its ListenerSet `owner`'s) reference to a TLS Secret cannot be
    used (reason, message), if so."""
    kind, home = (owner.kind, owner.namespace) if owner else ("Gateway", gateway.namespace)
    namespace = ref.namespace or home
    if ref.group != CORE_GROUP or ref.kind != "Secret":
        return invalid, f"{ref.group or 'core'}/{ref.kind} is not a Secret"
    if namespace != home and not granted(
            mesh, GATEWAY_GROUP, kind, home, CORE_GROUP, "Secret", namespace, ref.name):
        return "RefNotPermitted", (f"no ReferenceGrant in {namespace} lets {kind}s of "
                                   f"{home} use Secret {ref.name}")
    secret = mesh.get("Secret", namespace, ref.name)
    if secret is None:
        return invalid, f"Secret {namespace}/{ref.name} does not exist"
    if not secret.spec.usable_tls:
        return invalid, f"Secret {namespace}/{ref.name}: {secret.spec.problem}"
    return None


def _conflicts(listeners: tuple[GatewayListener, ...]) -> dict[str, tuple[str, str]]:
    """Listeners that are not distinct (gateway_types.go, "Distinct Listeners")."""
    out: dict[str, tuple[str, str]] = {}
    by_port: dict[int, list[GatewayListener]] = defaultdict(list)
    for listener in listeners:
        by_port[listener.port].append(listener)
    for port, group in by_port.items():
        protocols = {item.protocol for item in group}
        if ("TCP" in protocols and len(group) > 1) or {"HTTP", "HTTPS"} <= protocols or (
                "HTTP" in protocols and "TLS" in protocols):
            for item in group:
                out[item.name] = ("ProtocolConflict",
                                  f"port {port} is used by listeners with protocols "
                                  f"{', '.join(sorted(protocols))}")
            continue
        seen: dict[tuple[str, str | None], str] = {}
        for item in group:
            key = (item.protocol if item.protocol != "TLS" else "HTTPS", item.hostname)
            if key in seen:
                message = f"listeners {seen[key]} and {item.name} have port {port} and " \
                          f"hostname {item.hostname or '(any)'}"
                out[item.name] = ("HostnameConflict", message)
                out[seen[key]] = ("HostnameConflict", message)
            seen[key] = item.name
    return out


def _certificate_refs(mesh: Mesh, gateway: MeshObject, listener: GatewayListener) -> Condition:
    if listener.tls is None or listener.tls.mode != "Terminate":
        return Condition("ResolvedRefs", "True", "ResolvedRefs")
    for ref in listener.tls.certificate_refs:
        problem = _secret_problem(mesh, gateway, ref, "InvalidCertificateRef",
                                  listener.origin)
        if problem is not None:
            return Condition("ResolvedRefs", "False", *problem)
    return Condition("ResolvedRefs", "True", "ResolvedRefs")


def listener_ready(mesh: Mesh, gateway: ObjectKey, listener: str) -> bool:
    """Served: the Gateway and the listener are Accepted and the listener's references
    resolve (a route kind it cannot serve leaves it serving the others)."""
    if not all(item.ok for item in mesh.conditions.get(gateway, []) if item.type == "Accepted"):
        return False
    return all(item.ok for item in mesh.listener_conditions.get((gateway, listener), [])
               if item.type == "Accepted" or (item.type == "ResolvedRefs"
                                              and item.reason != "InvalidRouteKinds"))


def listener_accepted(mesh: Mesh, gateway: ObjectKey, listener: str) -> bool:
    """Routes attach to an Accepted listener even when its references do not resolve (it is
    then not Programmed, and not served): the suite's GatewayWithAttachedRoutes counts them in
    attachedRoutes."""
    return all(item.ok for item in mesh.listener_conditions.get((gateway, listener), [])
               if item.type == "Accepted")


def granted(mesh: Mesh, group: str, kind: str, namespace: str, to_group: str, to_kind: str,
            to_namespace: str, to_name: str) -> bool:
    return any(grant.namespace == to_namespace and grant.spec.allows(
        group, kind, namespace, to_group, to_kind, to_name)
        for grant in mesh.of_kind("ReferenceGrant"))


# ---- attachment -------------------------------------------------------------------------------

def _attach(mesh: Mesh, route: MeshObject) -> None:
    for index, ref in enumerate(route.spec.parents):
        if ref.group == CORE_GROUP and ref.kind == "Service":
            found = _attach_service(mesh, route, index, ref)
        elif ref.group == GATEWAY_GROUP and ref.kind == "Gateway":
            found = _attach_gateway(mesh, route, index, ref)
        elif ref.group == GATEWAY_GROUP and ref.kind == "ListenerSet":
            found = _attach_listener_set(mesh, route, index, ref)
        else:
            found = Attachment(route, index, ref, None, False, "NoMatchingParent",
                               f"parents of kind {ref.group or 'core'}/{ref.kind} are not "
                               "supported (Gateway and Service are)")
        mesh.attachments[route.key].append(found)
        if not found.accepted or found.parent is None:
            continue
        if found.parent.kind == "Service":
            for port in found.ports:
                mesh.on_service_port[(found.parent.namespace, found.parent.name, port)].append(
                    found)
        else:
            for listener, _hosts in found.listeners:
                mesh.on_listener[(found.parent, listener)].append(found)


def _attach_service(mesh: Mesh, route: MeshObject, index: int, ref: ParentRef) -> Attachment:
    namespace = ref.namespace or route.namespace
    key = ObjectKey("Service", namespace, ref.name)
    service = mesh.objects.get(key)
    if service is None:
        return Attachment(route, index, ref, key, False, "NoMatchingParent",
                          f"Service {namespace}/{ref.name} does not exist")
    if route.kind == "TLSRoute":
        return Attachment(route, index, ref, key, False, "NoMatchingParent",
                          "a TLSRoute attaches to Gateway TLS listeners only")
    spec: ServiceSpec = service.spec
    ports = [port for port in spec.ports
             if (ref.port is None or port.port == ref.port)
             and (ref.section_name is None or port.name == ref.section_name)]
    if not ports:
        return Attachment(route, index, ref, key, False, "NoMatchingParent",
                          f"Service {namespace}/{ref.name} has no such port")
    fitting = tuple(port.port for port in ports if port.declared in PARENT_FITS[route.kind])
    if not fitting:
        return Attachment(route, index, ref, key, False, "NoMatchingParent",
                          f"a {route.kind} cannot carry appProtocol "
                          f"{ports[0].app_protocol!r} (port {ports[0].port})")
    return Attachment(route, index, ref, key, True, "Accepted", ports=fitting)


def _attach_gateway(mesh: Mesh, route: MeshObject, index: int, ref: ParentRef) -> Attachment:
    namespace = ref.namespace or route.namespace
    key = ObjectKey("Gateway", namespace, ref.name)
    gateway = mesh.objects.get(key)
    if gateway is None:
        return Attachment(route, index, ref, key, False, "NoMatchingParent",
                          f"Gateway {namespace}/{ref.name} does not exist")
    spec: GatewaySpec = gateway.spec
    candidates = [item for item in spec.listeners if item.origin is None
                  and (ref.section_name is None or item.name == ref.section_name)
                  and (ref.port is None or item.port == ref.port)]
    return _attach_listeners(mesh, route, index, ref, key, gateway.namespace, candidates)


def _attach_listener_set(mesh: Mesh, route: MeshObject, index: int, ref: ParentRef
                         ) -> Attachment:
    """A parentRef of kind ListenerSet: that set's listeners, served by its Gateway."""
    namespace = ref.namespace or route.namespace
    key = ObjectKey("ListenerSet", namespace, ref.name)
    gateway = mesh.listener_set_parent.get(key)
    if key not in mesh.objects or gateway is None:
        return Attachment(route, index, ref, key, False, "NoMatchingParent",
                          f"ListenerSet {namespace}/{ref.name} does not exist or is not "
                          "accepted")
    candidates = [item for item in mesh.objects[gateway].spec.listeners if item.origin == key
                  and (ref.section_name is None or item.entry == ref.section_name)
                  and (ref.port is None or item.port == ref.port)]
    found = _attach_listeners(mesh, route, index, ref, gateway, namespace, candidates)
    return replace(found, parent=gateway) if found.accepted else replace(found, parent=key)


def _attach_listeners(mesh: Mesh, route: MeshObject, index: int, ref: ParentRef,
                      key: ObjectKey, owner_namespace: str,
                      candidates: list[GatewayListener]) -> Attachment:
    """A route on some listeners of a Gateway (its own, or one ListenerSet's, whose
    namespace is `owner_namespace`: what allowedRoutes `Same` means)."""
    if not candidates:
        return Attachment(route, index, ref, key, False, "NoMatchingParent",
                          "no listener has that sectionName/port")
    reason, message = "NotAllowedByListeners", "no listener allows this route"
    accepted: list[tuple[str, tuple[str, ...]]] = []
    for listener in candidates:
        if not listener_accepted(mesh, key, listener.name):
            message = f"listener {listener.name} is not accepted"
            continue
        if (GATEWAY_GROUP, route.kind) not in supported_kinds(listener):
            message = f"listener {listener.name} does not allow {route.kind}"
            continue
        if not _namespace_allowed(mesh, listener, owner_namespace, route.namespace):
            message = f"listener {listener.name} does not allow routes from namespace " \
                      f"{route.namespace}"
            continue
        hosts = effective(listener.hostname, getattr(route.spec, "hostnames", ()))
        if listener.protocol == "TCP":
            hosts = ("*",)
        if not hosts:
            reason = "NoMatchingListenerHostname"
            message = f"no hostname of the route matches listener {listener.name} " \
                      f"({listener.hostname})"
            continue
        accepted.append((listener.name, hosts))
    if not accepted:
        return Attachment(route, index, ref, key, False, reason, message)
    return Attachment(route, index, ref, key, True, "Accepted", listeners=tuple(accepted))


def _namespace_allowed(mesh: Mesh, listener: GatewayListener, gateway_namespace: str,
                       route_namespace: str) -> bool:
    if listener.namespaces_from == "All":
        return True
    if listener.namespaces_from == "None":
        return False
    if listener.namespaces_from == "Selector":
        return listener.namespace_selector is not None and \
            listener.namespace_selector.matches(namespace_labels(mesh, route_namespace))
    return gateway_namespace == route_namespace


def namespace_labels(mesh: Mesh, name: str) -> dict[str, str]:
    """A namespace's labels: its Namespace object's, if one is among the objects, and the
    `kubernetes.io/metadata.name` label the API server sets on every Namespace (Kubernetes
    1.21+, NamespaceDefaultLabelName), so a namespace exists by being named."""
    found = next((item for item in mesh.of_kind("Namespace") if item.name == name), None)
    labels = dict(found.meta.labels) if found is not None else {}
    labels["kubernetes.io/metadata.name"] = name
    return labels


def _infer_protocols(mesh: Mesh) -> None:
    """A port's protocol: its appProtocol, else what attached routes say (GRPCRoute: grpc,
    HTTPRoute: http, TCPRoute: tcp), else what routes using it as a backend say, else tcp."""
    backend_kinds: dict[tuple[str, str, int], set[str]] = defaultdict(set)
    for kind in ("HTTPRoute", "GRPCRoute"):
        for route in mesh.of_kind(kind):
            for rule in route.spec.rules:
                for ref in rule.backends:
                    if ref.group == CORE_GROUP and ref.kind == "Service" and ref.port:
                        backend_kinds[(ref.namespace or route.namespace, ref.name,
                                       ref.port)].add(kind)
    for service in mesh.of_kind("Service"):
        for port in service.spec.ports:
            key = (service.namespace, service.name, port.port)
            found = declared(mesh, service, port)
            if found is not None:
                mesh.port_protocols[key] = found
                continue
            kinds = {item.route.kind for item in mesh.on_service_port.get(key, [])}
            kinds = kinds or backend_kinds.get(key, set())
            mesh.port_protocols[key] = ("grpc" if "GRPCRoute" in kinds else
                                        "http" if "HTTPRoute" in kinds else "tcp")


# ---- backends ---------------------------------------------------------------------------------

def _resolve_backends(mesh: Mesh, route: MeshObject) -> list[Backend]:
    """Resolve every backendRef and mirror of a route; returns the ones that failed."""
    failed = []
    for rule_index, rule in enumerate(route.spec.rules):
        for index, ref in enumerate(rule.backends):
            found = mesh.backends[(route.key, rule_index, index)] = resolve_backend(
                mesh, route, ref)
            if not found.ok:
                failed.append(found)
        filters = getattr(rule, "filters", None)
        for index, mirror in enumerate(getattr(filters, "mirrors", ())):
            found = mesh.mirrors[(route.key, rule_index, index)] = resolve_backend(
                mesh, route, mirror.backend)
            if not found.ok:
                failed.append(found)
    return failed


def resolve_backend(mesh: Mesh, route: MeshObject, ref: BackendRef) -> Backend:
    namespace = ref.namespace or route.namespace
    if ref.group != CORE_GROUP or ref.kind != "Service":
        return Backend(ref, False, "InvalidKind",
                       f"backends of kind {ref.group or 'core'}/{ref.kind} are not supported "
                       "(Service is)")
    if namespace != route.namespace and _edge_route(route) and not granted(
            mesh, GATEWAY_GROUP, route.kind, route.namespace, CORE_GROUP, "Service", namespace,
            ref.name):
        return Backend(ref, False, "RefNotPermitted",
                       f"no ReferenceGrant in {namespace} lets {route.kind}s of "
                       f"{route.namespace} use Service {ref.name}")
    service = mesh.service(namespace, ref.name)
    if service is None:
        return Backend(ref, False, "BackendNotFound",
                       f"Service {namespace}/{ref.name} does not exist")
    port = service.spec.port(ref.port) if ref.port else None
    if port is None:
        return Backend(ref, False, "BackendNotFound",
                       f"Service {namespace}/{ref.name} has no port {ref.port}")
    if declared(mesh, service, port) not in FITS[route.kind]:
        return Backend(ref, False, "UnsupportedProtocol",
                       f"a {route.kind} cannot send to appProtocol {port.app_protocol!r} "
                       f"(Service {namespace}/{ref.name} port {port.port})")
    return Backend(ref, True, "ResolvedRefs", service=service, port=port)


def _edge_route(route: MeshObject) -> bool:
    """A route with a Gateway parent needs a ReferenceGrant to send to another namespace. A
    mesh route (Service parents only) does not: its callers may call that Service directly
    (GAMMA consumer routes send to the producer's Service, as the conformance suite's
    MeshConsumerRoute does, with no grant)."""
    return any(not (ref.group == CORE_GROUP and ref.kind == "Service")
               for ref in route.spec.parents)


def _route_conditions(mesh: Mesh, route: MeshObject, failures: list[Backend]) -> None:
    attachments = mesh.attachments.get(route.key, [])
    if not attachments:
        mesh.conditions[route.key].append(Condition(
            "Accepted", "False", "NoMatchingParent", "the route has no parentRefs"))
    elif any(item.accepted for item in attachments):
        mesh.conditions[route.key].append(Condition("Accepted", "True", "Accepted"))
    else:
        first = attachments[0]
        mesh.conditions[route.key].append(Condition("Accepted", "False", first.reason,
                                                    first.message))
    if failures:
        mesh.conditions[route.key].append(Condition("ResolvedRefs", "False", failures[0].reason,
                                                    failures[0].message))
    else:
        mesh.conditions[route.key].append(Condition("ResolvedRefs", "True", "ResolvedRefs"))


# ---- policies ---------------------------------------------------------------------------------

def _target(mesh: Mesh, policy: MeshObject) -> None:
    problems: list[Condition] = []
    for index, ref in enumerate(policy.spec.targets):
        if (ref.group, ref.kind) not in POLICY_TARGETS[policy.kind]:
            problems.append(Condition("Accepted", "False", "Invalid",
                                      f"a {policy.kind} cannot target {ref.group or 'core'}/"
                                      f"{ref.kind}"))
            continue
        key = ObjectKey(ref.kind, policy.namespace, ref.name)
        target = mesh.objects.get(key)
        if target is None:
            problems.append(Condition("Accepted", "False", "TargetNotFound",
                                      f"{ref.describe(policy.namespace)} does not exist"))
            continue
        if ref.section_name and not _has_section(target, ref.section_name):
            problems.append(Condition("Accepted", "False", "TargetNotFound",
                                      f"{target.label} has no section {ref.section_name!r}"))
            continue
        rival = mesh.policy_for(policy.kind, key, ref.section_name)
        if rival is not None and _same_scope(mesh, rival, key, ref.section_name):
            problems.append(Condition("Accepted", "False", "Conflicted",
                                      f"{rival.label} already targets "
                                      f"{ref.describe(policy.namespace)}"))
            continue
        mesh.policies[key].append(PolicyTarget(policy, index, key, ref.section_name))
    if problems and len(problems) == len(policy.spec.targets):
        mesh.conditions[policy.key].append(problems[0])
    else:
        message = "; ".join(item.message for item in problems)
        mesh.conditions[policy.key].append(Condition("Accepted", "True", "Accepted", message))


def _same_scope(mesh: Mesh, rival: MeshObject, key: ObjectKey, section: str | None) -> bool:
    return any(item.policy is rival and item.section == section
               for item in mesh.policies.get(key, []))


def _has_section(target: MeshObject, section: str) -> bool:
    if target.kind == "Gateway":
        return target.spec.listener(section) is not None
    if target.kind == "Service":
        return target.spec.port_named(section) is not None
    return any(getattr(rule, "name", None) == section for rule in target.spec.rules)
