"""The status expectations of the Gateway API conformance suite's gateway tests, as data, and
the rules the suite applies to them, as functions.

Each class mirrors one helper of `conformance/utils/kubernetes/helpers.go` (named in its
docstring) or one procedural step of a Go test (Apply, Update, Delete, Never); a translated test
is a sequence of these and of exchange steps (gateway_steps.py). The check functions take the
status as the API server would hold it (plain mappings: `conditions` lists of
`{type, status, reason}`, route `parents`, gateway `listeners`), so a runner can feed them what
`pointsman get KIND NAME -n NS` prints. Each returns why the status does not match, or None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

GROUP = "gateway.networking.k8s.io"  # gatewayv1.GroupVersion.Group
INFRA_NAMESPACE = "gateway-conformance-infra"  # suite.InfrastructureNamespace
APP_NAMESPACE = "gateway-conformance-app-backend"  # suite.AppBackendNamespace
WEB_NAMESPACE = "gateway-conformance-web-backend"  # suite.WebBackendNamespace
CONTROLLER = "{controller}"  # suite.ControllerName: the implementation's, given at run time

Status = Mapping[str, Any]


@dataclass(frozen=True)
class NN:
    """types.NamespacedName."""

    name: str
    namespace: str = INFRA_NAMESPACE


@dataclass(frozen=True)
class Condition:
    """metav1.Condition as the helpers compare it (findConditionInList): the type must be
    present; an empty status matches any status, an empty reason any reason."""

    type: str
    status: str = ""
    reason: str = ""


def condition_mismatch(expected: Condition, actual: Sequence[Status]) -> str | None:
    """findConditionInList: some condition of the expected type with the expected status (or
    any) and reason (or any)."""
    for cond in actual:
        if cond.get("type") != expected.type:
            continue
        if expected.status and cond.get("status") != expected.status:
            continue
        if expected.reason and cond.get("reason") != expected.reason:
            continue
        return None
    return f"{expected} was not in conditions list {list(actual)}"


def conditions_mismatch(expected: Sequence[Condition], actual: Sequence[Status]) -> str | None:
    """conditionsMatch: at least as many conditions as expected, each one found."""
    if len(actual) < len(expected):
        return "expected more conditions to be present"
    for cond in expected:
        why = condition_mismatch(cond, actual)
        if why:
            return why
    return None


# Conditions the helpers build again and again.
ROUTE_ACCEPTED = Condition("Accepted", "True", "Accepted")
ROUTE_RESOLVED = Condition("ResolvedRefs", "True", "ResolvedRefs")
LISTENER_READY = (Condition("ResolvedRefs", "True"), Condition("Accepted", "True"),
                  Condition("Programmed", "True"))  # RoutesAndParentMustBeAccepted
GATEWAY_ACCEPTED = Condition("Accepted", "True", "Accepted")  # GetGatewayAcceptedCondition
GATEWAY_PROGRAMMED = Condition("Programmed", "True", "Programmed")  # GetGatewayProgrammedCondition


@dataclass(frozen=True)
class GatewayRef:
    """kubernetes.NewGatewayRef: a Gateway and the listeners a route's status is checked
    against; none given means one parentRef with no sectionName (the "" entry). With kind
    ListenerSet it is NewResourceRef's ResourceRef (RoutesAndParentMustBeAccepted then expects
    parents of that kind and checks the ListenerSet's listeners)."""

    name: str
    namespace: str = INFRA_NAMESPACE
    listeners: tuple[str, ...] = ("",)
    kind: str = "Gateway"  # "ListenerSet": NewResourceRef(ListenerSet group kind, ...)

    @property
    def nn(self) -> NN:
        return NN(self.name, self.namespace)


@dataclass(frozen=True)
class RoutesAccepted:
    """GatewayAndRoutesMustBeAccepted (GatewayAndHTTPRoutesMustBeAccepted, ...AndTLS...,
    ...AndGRPC... through RouteTypeMustHaveParentsField): the Gateway has an address (the one the
    following exchanges go to; `use_port` False strips its port), every route has, per listener
    of the ref, a parent {group, kind Gateway, name, namespace, sectionName} from our
    controller with Accepted=True/Accepted (namespace compared only when the route lives in
    another namespace), and every listener of the Gateway has LISTENER_READY (not checked by
    GatewayAndTLSRoutesMustBeAccepted, which also returns the routes' spec.hostnames)."""

    gateway: GatewayRef
    routes: tuple[NN, ...] = ()
    kind: str = "HTTPRoute"
    use_port: bool = True
    listeners_ready: bool = True  # False: GatewayAndTLSRoutesMustBeAccepted checks none

    def expected_parents(self, route: NN) -> RouteParents:
        """The RouteMustHaveParents expectation the helper builds for one route."""
        parents = tuple(ParentStatus(self.gateway.name, self.gateway.namespace, section,
                                     (ROUTE_ACCEPTED,), kind=self.gateway.kind)
                        for section in self.gateway.listeners)
        return RouteParents(route, parents, route.namespace != self.gateway.namespace,
                            self.kind)


@dataclass(frozen=True)
class RouteCondition:
    """HTTPRouteMustHaveCondition (TLSRouteMustHaveCondition, ...): the route's parent status
    for the Gateway (matched by name, and by namespace when set) has the condition.
    HTTPRouteMustHaveResolvedRefsConditionsTrue is this with ROUTE_RESOLVED."""

    route: NN
    gateway: NN
    condition: Condition
    kind: str = "HTTPRoute"
    # the helper matches the parent by name (and namespace) only; ListenerSet tests pass a
    # ListenerSet's name: parent_kind says which object that is
    parent_kind: str = "Gateway"


def resolved(route: NN, gateway: NN, kind: str = "HTTPRoute") -> RouteCondition:
    """HTTPRouteMustHaveResolvedRefsConditionsTrue."""
    return RouteCondition(route, gateway, ROUTE_RESOLVED, kind)


@dataclass(frozen=True)
class ParentStatus:
    """gatewayv1.RouteParentStatus as the suite builds it: parentRef (group, kind, name,
    namespace, sectionName, port; None means unset), controllerName, conditions."""

    name: str
    namespace: str | None = INFRA_NAMESPACE
    section_name: str = ""
    conditions: tuple[Condition, ...] = ()
    kind: str = "Gateway"
    group: str = GROUP
    port: int | None = None
    controller: str = CONTROLLER


@dataclass(frozen=True)
class RouteParents:
    """HTTPRouteMustHaveParents (RouteMustHaveParents): each expected parent is matched by
    some actual parent (parentsForRouteMatch)."""

    route: NN
    parents: tuple[ParentStatus, ...]
    namespace_required: bool = True
    kind: str = "HTTPRoute"


def parents_mismatch(expected: RouteParents, actual: Sequence[Status],
                     controller: str) -> str | None:
    """parentsForRouteMatch: for every expected parent some actual parent with the same
    controllerName, group, kind and name (Go's pointer DeepEqual: unset differs from set), the
    same namespace unless not required and unset in the actual, and the expected conditions
    (conditionsMatch). sectionName and port are not compared at this commit (helpers.go):
    HTTPRouteHTTPSListener expects a parent with no sectionName for a route whose parentRef
    names one."""
    for want in expected.parents:
        want_controller = controller if want.controller == CONTROLLER else want.controller
        for got in actual:
            ref = got.get("parentRef", {})
            if got.get("controllerName") != want_controller:
                continue
            if ref.get("group") != want.group or ref.get("kind") != want.kind:
                continue
            if ref.get("name") != want.name:
                continue
            if ref.get("namespace") != want.namespace and (
                    expected.namespace_required or ref.get("namespace") is not None):
                continue
            if conditions_mismatch(want.conditions, got.get("conditions", ())):
                continue
            break
        else:
            return f"route {expected.route} has no parent matching {want}"
    return None


@dataclass(frozen=True)
class RouteNoAcceptedParents:
    """HTTPRouteMustHaveNoAcceptedParents: the route's status has no parent, or its parents
    have Accepted=False."""

    route: NN
    kind: str = "HTTPRoute"


@dataclass(frozen=True)
class ListenerStatus:
    """gatewayv1.ListenerStatus as compared by gatewayListenersMatch."""

    name: str
    supported_kinds: tuple[str, ...] = ()  # kinds of GROUP unless written "group/Kind"
    conditions: tuple[Condition, ...] = ()
    attached_routes: int = 0


@dataclass(frozen=True)
class GatewayListeners:
    """GatewayStatusMustHaveListeners: the Gateway's status lists exactly these listeners."""

    gateway: NN
    listeners: tuple[ListenerStatus, ...]
    kind: str = "Gateway"  # "ListenerSet": ListenerSetStatusMustHaveListeners


def _kind_key(kind: str) -> tuple[str, str]:
    group, _, name = kind.rpartition("/")
    return (group or GROUP, name)


def listeners_mismatch(expected: Sequence[ListenerStatus],
                       actual: Sequence[Status]) -> str | None:
    """gatewayListenersMatch: as many listeners as expected; for each expected one the actual
    of that name, with no supportedKinds when none are expected, else each expected group/kind
    among the actual ones (a missing group is the Gateway API group), attachedRoutes equal, and
    the expected conditions."""
    if len(expected) != len(actual):
        return f"expected {len(expected)} Gateway status listeners, got {len(actual)}"
    for want in expected:
        got = next((item for item in actual if item.get("name") == want.name), None)
        if got is None:
            return f"expected status for listener {want.name} to be present"
        kinds = {(kind.get("group") or GROUP, kind.get("kind", ""))
                 for kind in got.get("supportedKinds", ())}
        if not want.supported_kinds and kinds:
            return f"listener {want.name}: expected no supportedKinds, got {sorted(kinds)}"
        for kind in want.supported_kinds:
            if _kind_key(kind) not in kinds:
                return f"listener {want.name}: expected {kind} in supportedKinds"
        if got.get("attachedRoutes", 0) != want.attached_routes:
            return (f"listener {want.name}: expected attachedRoutes {want.attached_routes}, "
                    f"got {got.get('attachedRoutes', 0)}")
        why = conditions_mismatch(want.conditions, got.get("conditions", ()))
        if why:
            return f"listener {want.name}: {why}"
    return None


@dataclass(frozen=True)
class GatewayCondition:
    """GatewayMustHaveCondition (ListenerSetMustHaveCondition with kind ListenerSet): the
    object's status conditions include this one."""

    gateway: NN
    condition: Condition
    kind: str = "Gateway"  # "ListenerSet": ListenerSetMustHaveCondition


@dataclass(frozen=True)
class ListenersConditions:
    """GatewayListenersMustHaveConditions / GatewayListenerMustHaveConditions: the named
    listeners (none named: every listener) have all the conditions."""

    gateway: NN
    conditions: tuple[Condition, ...]
    listeners: tuple[str, ...] = ()
    kind: str = "Gateway"  # "ListenerSet": ListenerSetListenersMustHaveConditions


@dataclass(frozen=True)
class GatewayZeroRoutes:
    """GatewayMustHaveZeroRoutes: every listener of the Gateway has attachedRoutes 0."""

    gateway: NN


@dataclass(frozen=True)
class AttachedListeners:
    """GatewayMustHaveAttachedListeners: status.attachedListeners equals the count."""

    gateway: NN
    count: int


@dataclass(frozen=True)
class LatestConditions:
    """GatewayMustHaveLatestConditions, GatewayClassMustHaveLatestConditions,
    HTTPRouteMustHaveLatestConditions (ConditionsHaveLatestObservedGeneration): every
    condition's observedGeneration equals the object's metadata.generation."""

    kind: str
    name: NN


@dataclass(frozen=True)
class GatewayClassAccepted:
    """GWCMustHaveAcceptedConditionTrue (status "True") / ...Any (status ""): the
    GatewayClass has an Accepted condition."""

    name: str
    status: str = "True"


@dataclass(frozen=True)
class NamespacesReady:
    """NamespacesMustBeReady: every Gateway in these namespaces is Programmed with an
    address, and every Pod is Ready."""

    namespaces: tuple[str, ...] = (INFRA_NAMESPACE,)


@dataclass(frozen=True)
class PolicyCondition:
    """BackendTLSPolicyMustHaveCondition: some entry of the policy's status.ancestors whose
    ancestorRef names the Gateway (namespace unset or equal) has the condition, with the
    latest observedGeneration."""

    policy: NN
    gateway: NN
    condition: Condition
    kind: str = "BackendTLSPolicy"


# Procedural steps: what a Go test does to the objects mid-test.


@dataclass(frozen=True)
class Apply:
    """suite.Applier.MustApplyWithCleanup mid-test: apply a vendored manifest (path under
    upstream/conformance/)."""

    manifest: str


@dataclass(frozen=True)
class Update:
    """Fetch an object, change its spec as `change` says (JSON-merge-patch-shaped data), and
    write it back (client.Update / client.Patch in the Go test)."""

    kind: str
    name: NN
    change: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class Delete:
    """client.Delete of an object mid-test."""

    kind: str
    name: NN


@dataclass(frozen=True)
class Create:
    """client.Create of an object the Go test builds in code (not a manifest), as data."""

    kind: str
    name: NN
    spec: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class ObservedGenerationBumped:
    """The Go test compares observedGeneration before and after an Update: after it, every
    condition of the object carries a newer observedGeneration than before."""

    kind: str
    name: NN
