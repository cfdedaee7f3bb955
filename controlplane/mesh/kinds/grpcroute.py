"""`gateway.networking.k8s.io/v1 GRPCRoute` (apis/v1 grpcroute_types.go): matches on the gRPC
method (service and method, Exact or RegularExpression) and headers; filters
RequestHeaderModifier, ResponseHeaderModifier and RequestMirror; weighted backendRefs;
sessionPersistence. A GRPCRoute is an HTTP/2 route whose path is /service/method."""

from __future__ import annotations

import re
from dataclasses import dataclass

from controlplane.mesh.fields import HEADER_NAME, Fields, Item
from controlplane.mesh.kinds.filters import (
    GRPC_FILTERS,
    Filters,
    SessionPersistence,
    parse_filters,
    parse_session_persistence,
)
from controlplane.mesh.kinds.httproute import ValueMatch
from controlplane.mesh.kinds.refs import BackendRef, ParentRef, parse_backend_ref
from controlplane.mesh.kinds.routes import (
    check_rule_names,
    parse_backends,
    parse_hostnames,
    parse_parents,
    rule_name,
)

SERVICE = re.compile(r"^\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$", re.IGNORECASE)
METHOD = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*$")


@dataclass(frozen=True)
class MethodMatch:
    kind: str = "Exact"  # Exact | RegularExpression
    service: str | None = None
    method: str | None = None


@dataclass(frozen=True)
class GrpcMatch:
    method: MethodMatch | None
    headers: tuple[ValueMatch, ...]
    index: int


@dataclass(frozen=True)
class GrpcRule:
    name: str | None
    matches: tuple[GrpcMatch, ...]
    filters: Filters
    backends: tuple[BackendRef, ...]
    session: SessionPersistence | None
    index: int


@dataclass(frozen=True)
class GrpcRouteSpec:
    parents: tuple[ParentRef, ...]
    hostnames: tuple[str, ...]
    rules: tuple[GrpcRule, ...]


def parse_grpcroute_spec(fields: Fields) -> GrpcRouteSpec:
    parents = parse_parents(fields)
    hostnames = parse_hostnames(fields)
    rules = fields.items("rules", _rule, max_items=16)
    if not rules:
        rules = (GrpcRule(None, (GrpcMatch(None, (), 0),), Filters(), (), None, 0),)
    check_rule_names(fields, [rule.name for rule in rules])
    total = sum(len(rule.matches) for rule in rules)
    if total > 128:
        raise fields.error("rules", f"the total number of matches across all rules in a route "
                                    f"must be at most 128 (has {total})")
    fields.done(unsupported=("useDefaultGateways",))
    return GrpcRouteSpec(parents, hostnames, rules)


def _rule(item: Item) -> GrpcRule:
    def parse(fields: Fields) -> GrpcRule:
        matches = fields.items("matches", _match, max_items=64) or (GrpcMatch(None, (), 0),)
        return GrpcRule(rule_name(fields), matches,
                        parse_filters(fields, "filters", GRPC_FILTERS),
                        parse_backends(fields, _backend),
                        fields.obj("sessionPersistence", parse_session_persistence),
                        item.index)
    return item.obj(parse)


def _backend(fields: Fields) -> BackendRef:
    ref = parse_backend_ref(fields)
    filters = parse_filters(fields, "filters", ("RequestHeaderModifier",
                                                "ResponseHeaderModifier"))
    return BackendRef(ref.group, ref.kind, ref.name, ref.namespace, ref.port, ref.weight,
                      (filters,))


def _match(item: Item) -> GrpcMatch:
    def parse(fields: Fields) -> GrpcMatch:
        method = fields.obj("method", _method)
        headers = fields.obj_list("headers", _header, max_items=16)
        return GrpcMatch(method, headers, item.index)
    return item.obj(parse)


def _method(fields: Fields) -> MethodMatch:
    kind = fields.text("type", default="Exact", enum=("Exact", "RegularExpression")) or "Exact"
    service = fields.text("service", max_len=1024)
    method = fields.text("method", max_len=1024)
    if service is None and method is None:
        raise fields.error(None, "One or both of 'service' or 'method' must be specified")
    if kind == "Exact":
        if service is not None and not SERVICE.match(service):
            raise fields.error("service", f"invalid gRPC service name {service!r}")
        if method is not None and not METHOD.match(method):
            raise fields.error("method", f"invalid gRPC method name {method!r}")
    else:
        for key, value in (("service", service), ("method", method)):
            if value is not None:
                try:
                    re.compile(value)
                except re.error as error:
                    raise fields.error(key, f"invalid regular expression: {error}") from error
    return MethodMatch(kind, service, method)


def _header(fields: Fields) -> ValueMatch:
    kind = fields.text("type", default="Exact", enum=("Exact", "RegularExpression")) or "Exact"
    name = fields.req_str("name", min_len=1, max_len=256, pattern=HEADER_NAME)
    value = fields.req_str("value", min_len=1, max_len=4096)
    if kind == "RegularExpression":
        try:
            re.compile(value)
        except re.error as error:
            raise fields.error("value", f"invalid regular expression: {error}") from error
    return ValueMatch(kind, name, value)
