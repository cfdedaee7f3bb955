"""References between objects, in Gateway API's shapes (apis/v1 shared_types.go,
object_reference_types.go, policy_types.go). Parsed here; resolved by controlplane.mesh.resolve,
which turns a reference to nothing into a status condition, not a load error (as Kubernetes
stores such objects and reports them in status)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from controlplane.mesh.fields import DNS_LABEL, DNS_SUBDOMAIN, Fields

GATEWAY_GROUP = "gateway.networking.k8s.io"
CORE_GROUP = ""  # Kubernetes' core API group; "core" is taken as its alias, as GAMMA examples use
GROUP = re.compile(r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
KIND = re.compile(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
MAX_PORT = 65535


def normal_group(group: str) -> str:
    return CORE_GROUP if group == "core" else group


@dataclass(frozen=True)
class ParentRef:
    group: str
    kind: str
    name: str
    namespace: str | None = None
    section_name: str | None = None
    port: int | None = None

    def describe(self, route_namespace: str) -> str:
        out = f"{self.kind} {self.namespace or route_namespace}/{self.name}"
        if self.section_name:
            out += f" section {self.section_name}"
        if self.port:
            out += f" port {self.port}"
        return out


@dataclass(frozen=True)
class BackendRef:
    """BackendObjectReference + weight (+ per-backend filters for HTTP routes)."""

    group: str
    kind: str
    name: str
    namespace: str | None = None
    port: int | None = None
    weight: int = 1
    filters: tuple[object, ...] = ()

    def describe(self, route_namespace: str) -> str:
        port = f":{self.port}" if self.port else ""
        return f"{self.kind} {self.namespace or route_namespace}/{self.name}{port}"


@dataclass(frozen=True)
class TargetRef:
    """LocalPolicyTargetReferenceWithSectionName: a policy's target, in its own namespace."""

    group: str
    kind: str
    name: str
    section_name: str | None = None

    def describe(self, namespace: str) -> str:
        section = f" section {self.section_name}" if self.section_name else ""
        return f"{self.kind} {namespace}/{self.name}{section}"


@dataclass(frozen=True)
class SecretRef:
    group: str
    kind: str
    name: str
    namespace: str | None = None


def parse_parent_ref(fields: Fields) -> ParentRef:
    group = normal_group(fields.text("group", default=GATEWAY_GROUP, max_len=253, pattern=GROUP)
                         or "")
    kind = fields.text("kind", default="Gateway", min_len=1, max_len=63, pattern=KIND) or "Gateway"
    return ParentRef(
        group=group, kind=kind,
        name=fields.req_str("name", min_len=1, max_len=253),
        namespace=fields.text("namespace", min_len=1, max_len=63, pattern=DNS_LABEL),
        section_name=fields.text("sectionName", min_len=1, max_len=253, pattern=DNS_SUBDOMAIN),
        port=fields.integer("port", minimum=1, maximum=MAX_PORT))


def parse_backend_object(fields: Fields) -> tuple[str, str, str, str | None, int | None]:
    group = normal_group(fields.text("group", default=CORE_GROUP, max_len=253, pattern=GROUP)
                         or "")
    kind = fields.text("kind", default="Service", min_len=1, max_len=63, pattern=KIND) or "Service"
    name = fields.req_str("name", min_len=1, max_len=253)
    namespace = fields.text("namespace", min_len=1, max_len=63, pattern=DNS_LABEL)
    port = fields.integer("port", minimum=1, maximum=MAX_PORT)
    if port is None and group == CORE_GROUP and kind == "Service":
        # CEL rule on BackendObjectReference: "Must have port for Service reference".
        raise fields.error("port", "is required when referring to a Service")
    return group, kind, name, namespace, port


def parse_backend_ref(fields: Fields) -> BackendRef:
    group, kind, name, namespace, port = parse_backend_object(fields)
    weight = fields.integer("weight", default=1, minimum=0, maximum=1_000_000)
    return BackendRef(group, kind, name, namespace, port, 1 if weight is None else weight)


def parse_target_ref(fields: Fields) -> TargetRef:
    group = normal_group(fields.req_str("group", max_len=253, pattern=GROUP))
    return TargetRef(
        group=group,
        kind=fields.req_str("kind", min_len=1, max_len=63, pattern=KIND),
        name=fields.req_str("name", min_len=1, max_len=253),
        section_name=fields.text("sectionName", min_len=1, max_len=253, pattern=DNS_SUBDOMAIN))


def parse_secret_ref(fields: Fields) -> SecretRef:
    group = normal_group(fields.text("group", default=CORE_GROUP, max_len=253, pattern=GROUP)
                         or "")
    return SecretRef(
        group=group,
        kind=fields.text("kind", default="Secret", min_len=1, max_len=63, pattern=KIND)
        or "Secret",
        name=fields.req_str("name", min_len=1, max_len=253),
        namespace=fields.text("namespace", min_len=1, max_len=63, pattern=DNS_LABEL))


def check_distinct_parents(fields: Fields, parents: tuple[ParentRef, ...]) -> None:
    """CommonRouteSpec.parentRefs must be distinct (the CEL rules of shared_types.go)."""
    seen: set[tuple[object, ...]] = set()
    for index, ref in enumerate(parents):
        key = (ref.group, ref.kind, ref.namespace, ref.name, ref.section_name, ref.port)
        if key in seen:
            raise fields.context.error((*fields.path, "parentRefs", index),
                                       "parentRefs must be distinct: this one repeats an "
                                       "earlier one (set sectionName or port to tell them "
                                       "apart)")
        seen.add(key)
