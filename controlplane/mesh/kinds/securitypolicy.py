"""`gateway.envoyproxy.io/v1alpha1 SecurityPolicy` (Envoy Gateway v1.7 api/v1alpha1:
securitypolicy_types.go, authorization_types.go, cors_types.go): `authorization` by client
CIDR (rules in order, the first match decides, else `defaultAction`, which defaults to Deny)
and `cors`. Authentication (jwt, oidc, basicAuth, apiKeyAuth, extAuth) is refused by path."""

from __future__ import annotations

import re
from dataclasses import dataclass

from controlplane.mesh.fields import Fields, Item
from controlplane.mesh.kinds.policy import check_target_kinds, parse_targets
from controlplane.mesh.kinds.refs import TargetRef

ORIGIN = re.compile(r"^(\*|https?:\/\/(\*|(\*\.)?(([\w-]+\.?)+)?[\w-]+)(:\d{1,5})?)$")


@dataclass(frozen=True)
class AuthorizationRule:
    name: str
    action: str  # Allow | Deny
    client_cidrs: tuple[str, ...] = ()
    source_cidrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Authorization:
    rules: tuple[AuthorizationRule, ...]
    default_action: str = "Deny"


@dataclass(frozen=True)
class CorsPolicy:
    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: float | None = None
    allow_credentials: bool = False


@dataclass(frozen=True)
class SecurityPolicySpec:
    targets: tuple[TargetRef, ...]
    authorization: Authorization | None = None
    cors: CorsPolicy | None = None


def parse_securitypolicy_spec(fields: Fields) -> SecurityPolicySpec:
    spec = SecurityPolicySpec(parse_targets(fields), fields.obj("authorization", _authorization),
                              fields.obj("cors", _cors))
    fields.done(unsupported=("targetSelectors", "apiKeyAuth", "basicAuth", "jwt", "oidc",
                             "extAuth"))
    if spec.authorization is not None:
        check_target_kinds(fields, spec.targets, "authorization", ("Service", "Gateway"),
                           "authorization is enforced where connections arrive (a Gateway's "
                           "listeners, a Service's sidecars); per-route rules need per-route "
                           "filter config, which the Pointsman sidecar does not implement")
    return spec


def _authorization(fields: Fields) -> Authorization:
    rules = fields.items("rules", _rule)
    default = fields.text("defaultAction", default="Deny", enum=("Allow", "Deny")) or "Deny"
    return Authorization(rules, default)


def _rule(item: Item) -> AuthorizationRule:
    def parse(fields: Fields) -> AuthorizationRule:
        name = fields.text("name", min_len=1, max_len=253) or f"rule-{item.index}"
        action = fields.req_str("action", enum=("Allow", "Deny"))
        principal = fields.obj("principal", _principal, required=True)
        assert principal is not None
        fields.done(unsupported=("operation",))
        return AuthorizationRule(name, action, *principal)
    return item.obj(parse)


def _principal(fields: Fields) -> tuple[tuple[str, ...], tuple[str, ...]]:
    clients = fields.items("clientCIDRs", lambda item: item.cidr())
    sources = fields.items("sourceCIDRs", lambda item: item.cidr())
    if not clients and not sources:
        raise fields.error(None, "at least one of clientCIDRs or sourceCIDRs must be "
                                 "specified (jwt and headers are not supported)")
    fields.done(unsupported=("jwt", "headers"))
    return clients, sources


def _cors(fields: Fields) -> CorsPolicy:
    return CorsPolicy(
        allow_origins=fields.text_list("allowOrigins", pattern=ORIGIN, min_len=1, max_len=253),
        allow_methods=fields.text_list("allowMethods", min_len=1),
        allow_headers=fields.text_list("allowHeaders", min_len=1),
        expose_headers=fields.text_list("exposeHeaders", min_len=1),
        max_age=fields.duration("maxAge"),
        allow_credentials=bool(fields.flag("allowCredentials", default=False)))
