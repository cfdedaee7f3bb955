"""HTTP connection managers and the HTTP filters policies turn into.

Filter order, as Envoy Gateway orders them: cors, rbac (SecurityPolicy authorization),
local_ratelimit, fault, router. A filter is only present where something configures it.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from controlplane.mesh.compile.envoy import (
    CORS,
    FAULT,
    HCM,
    LOCAL_RATELIMIT,
    RBAC,
    ROUTER,
    filter_,
    seconds,
)
from controlplane.mesh.kinds.backendtrafficpolicy import LocalRateLimit
from controlplane.mesh.kinds.securitypolicy import Authorization, AuthorizationRule

ADS = {"ads": {}, "resource_api_version": "V3"}

# A sidecar's inbound answers its application's connection failure or reset with a local
# 503 (Envoy's "upstream connect error or disconnect/reset before headers"), which the caller
# cannot tell from the application's own 503. It marks that reply with this header
# (local_reply_config, by response flag), and a route whose retry policy retries connection
# errors (GEP-1731: disconnect, reset, TCP failure) retries a response carrying it
# (retry_on retriable-headers), as it would retry the reset had there been no sidecar.
UPSTREAM_RESET_HEADER = "x-pointsman-upstream-reset"
UPSTREAM_RESET_FLAGS = ("UF", "UC", "UR")  # connection failure, termination, remote reset


def upstream_reset_marker() -> dict[str, Any]:
    """The inbound HCM's local_reply_config: UPSTREAM_RESET_HEADER on the local reply of a
    stream with one of UPSTREAM_RESET_FLAGS."""
    return {"mappers": [{
        "filter": {"response_flag_filter": {"flags": list(UPSTREAM_RESET_FLAGS)}},
        "headers_to_add": [{"header": {"key": UPSTREAM_RESET_HEADER, "value": "true"},
                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]}]}


def http_connection_manager(stat_prefix: str, *, rds: str | None = None,
                            route_config: dict[str, Any] | None = None,
                            filters: list[dict[str, Any]] | None = None,
                            edge: bool = False, timeouts: Any = None,
                            local_reply: dict[str, Any] | None = None) -> dict[str, Any]:
    """`edge`: the client's own address is the one the connection comes from
    (use_remote_address, as Envoy Gateway sets on its listeners and as a sidecar's inbound
    listener needs for client-address rules); X-Forwarded-For is appended. `local_reply`:
    the local_reply_config."""
    body: dict[str, Any] = {
        "@type": HCM, "stat_prefix": stat_prefix, "codec_type": "AUTO",
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "http_filters": [*(filters or []), filter_("envoy.filters.http.router", ROUTER)],
    }
    if rds is not None:
        body["rds"] = {"route_config_name": rds, "config_source": ADS}
    else:
        body["route_config"] = route_config
    if edge:
        body["use_remote_address"] = True
    if local_reply is not None:
        body["local_reply_config"] = local_reply
    if timeouts is not None:  # a ClientTrafficPolicy's timeout.http
        if timeouts.request_received is not None:
            body["request_timeout"] = seconds(timeouts.request_received)
        if timeouts.idle is not None:
            body["common_http_protocol_options"] = {"idle_timeout": seconds(timeouts.idle)}
        if timeouts.stream_idle is not None:
            body["stream_idle_timeout"] = seconds(timeouts.stream_idle)
    return body


def hcm_filter(config: dict[str, Any]) -> dict[str, Any]:
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": config}


def per_route_filters(features: set[str]) -> list[dict[str, Any]]:
    """Filters whose configuration comes from the routes (typed_per_filter_config)."""
    out = []
    if "envoy.filters.http.cors" in features:
        out.append(filter_("envoy.filters.http.cors", CORS))
    if "envoy.filters.http.fault" in features:
        out.append(filter_("envoy.filters.http.fault", FAULT))
    return out


def rbac_filter(authorization: Authorization) -> dict[str, Any]:
    return filter_("envoy.filters.http.rbac", RBAC, {"rules": rbac_rules(authorization)})


def rbac_rules(authorization: Authorization) -> dict[str, Any]:
    """Envoy Gateway's ordered rules (the first that matches decides, else defaultAction) as
    one ALLOW RBAC: an Allow rule admits the clients it matches that no earlier Deny rule
    matches; a default Allow admits the clients no Deny rule matches."""
    policies: dict[str, Any] = {}
    denies: list[dict[str, Any]] = []
    for index, rule in enumerate(authorization.rules):
        principal = _principal(rule)
        if rule.action == "Deny":
            denies.append(principal)
            continue
        policies[f"{index}-{rule.name}"] = _policy([principal, *_nots(denies)])
    if authorization.default_action == "Allow":
        policies["default-allow"] = _policy(_nots(denies) or [{"any": True}])
    return {"action": "ALLOW", "policies": policies}


def _nots(principals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"not_id": item} for item in principals]


def _policy(ids: list[dict[str, Any]]) -> dict[str, Any]:
    principal = ids[0] if len(ids) == 1 else {"and_ids": {"ids": ids}}
    return {"permissions": [{"any": True}], "principals": [principal]}


def _principal(rule: AuthorizationRule) -> dict[str, Any]:
    groups = []
    if rule.client_cidrs:  # the client's address (X-Forwarded-For rules; use_remote_address)
        groups.append(_any_of("remote_ip", rule.client_cidrs))
    if rule.source_cidrs:  # the connection's peer
        groups.append(_any_of("direct_remote_ip", rule.source_cidrs))
    return groups[0] if len(groups) == 1 else {"and_ids": {"ids": groups}}


def _any_of(kind: str, cidrs: tuple[str, ...]) -> dict[str, Any]:
    ids = []
    for cidr in cidrs:
        network = ipaddress.ip_network(cidr, strict=False)
        ids.append({kind: {"address_prefix": str(network.network_address),
                           "prefix_len": network.prefixlen}})
    return ids[0] if len(ids) == 1 else {"or_ids": {"ids": ids}}


def local_ratelimit_filter(stat_prefix: str, limit: LocalRateLimit) -> dict[str, Any]:
    everyone = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
    return filter_("envoy.filters.http.local_ratelimit", LOCAL_RATELIMIT, {
        "stat_prefix": stat_prefix,
        "token_bucket": {"max_tokens": limit.requests, "tokens_per_fill": limit.requests,
                         "fill_interval": seconds(limit.unit_seconds)},
        "filter_enabled": everyone, "filter_enforced": everyone})
