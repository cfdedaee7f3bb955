"""`envoy.filters.http.cors`: Cross-Origin Resource Sharing as Envoy 1.40's cors_filter.cc.

Envoy doc: configuration/http/http_filters/cors_filter; api extensions/filters/http/cors/v3.
The filter config (`Cors`) has no fields: the policies come from the route. They are the
`CorsPolicy` per-route configs filed under the filter's name (its extension name when none is),
most specific first (route, virtual host, route configuration); when there is none, the
deprecated `cors` of the route action and of the virtual host. A setting is taken from the
first policy that sets it; `filter_enabled` and `shadow_enabled` from the first policy alone.

For a request whose route forwards (a redirect or direct response has no route entry in
Envoy, so no CORS) and whose policy is enabled or shadow-enabled, with an `Origin`:
- the origin is checked against `allow_origin_string_match` (a matcher that accepts `*`
  allows any origin), counting `http.<stat_prefix>.cors.origin_valid` / `origin_invalid`;
  shadow mode stops there;
- a preflight (OPTIONS with Access-Control-Request-Method) is answered 200 by the filter unless
  its origin is not allowed and `forward_not_matching_preflights` (default true) sends it on:
  Access-Control-Allow-Origin (allowed origins only), -Allow-Credentials, -Allow-Methods and
  -Allow-Headers (`*` echoes the request's Access-Control-Request-Method / -Headers),
  -Max-Age, and -Allow-Private-Network when allowed and asked for
  (https://wicg.github.io/private-network-access/);
- any response to an allowed origin gets Access-Control-Allow-Origin, -Allow-Credentials and
  -Expose-Headers (the preflight answer too: it passes the filter's response hook, as in Envoy).
`filter_enabled` / `shadow_enabled` runtime keys have no runtime layer here: the default value
applies, as in Envoy without one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from proxy.codec.headers import Headers, ResponseHead
from proxy.context import ServerContext
from proxy.http.filter import FilterMaker, HttpFilter, HttpStream, LocalReply, register_http_filter
from proxy.http.routing import per_filter_configs, resolve_route
from proxy.model.fields import reject_unsupported
from proxy.model.matchers import StringMatcher, translate_string_matcher, within
from proxy.model.route import ForwardAction

NAME = "envoy.filters.http.cors"
_DENOMINATORS = {0: 100, 1: 10_000, 2: 1_000_000}  # envoy.type.v3.FractionalPercent


@dataclass(frozen=True)
class Fraction:
    """A RuntimeFractionalPercent's default value (no runtime layer overrides it here)."""

    numerator: int
    denominator: int

    def draw(self, rng: random.Random) -> bool:
        # Envoy's featureEnabled: random % denominator < numerator.
        if self.numerator >= self.denominator:
            return True
        return self.numerator > 0 and rng.randrange(self.denominator) < self.numerator


@dataclass(frozen=True)
class CorsPolicy:
    allow_origins: tuple[StringMatcher, ...] = ()
    allow_methods: str = ""
    allow_headers: str = ""
    expose_headers: str = ""
    max_age: str = ""
    allow_credentials: bool | None = None
    allow_private_network_access: bool | None = None
    forward_not_matching_preflights: bool | None = None
    filter_enabled: Fraction | None = None  # None: enabled
    shadow_enabled: Fraction | None = None  # None: not in shadow mode

    def enabled(self, rng: random.Random) -> bool:
        return self.filter_enabled is None or self.filter_enabled.draw(rng)

    def shadow(self, rng: random.Random) -> bool:
        return self.shadow_enabled is not None and self.shadow_enabled.draw(rng)


_POLICY_FIELDS = {"allow_origin_string_match", "allow_methods", "allow_headers",
                  "expose_headers", "max_age", "allow_credentials", "filter_enabled",
                  "shadow_enabled", "allow_private_network_access",
                  "forward_not_matching_preflights"}


def _fraction(runtime_fraction: Any) -> Fraction:
    value = runtime_fraction.default_value
    return Fraction(value.numerator, _DENOMINATORS[value.denominator])


def _optional_bool(message: Any, name: str) -> bool | None:
    return bool(getattr(message, name).value) if message.HasField(name) else None


def translate_policy(message: Message) -> CorsPolicy:
    """extensions.filters.http.cors.v3.CorsPolicy, or the deprecated config.route.v3.CorsPolicy
    (the same fields)."""
    m: Any = message
    reject_unsupported(m, _POLICY_FIELDS)
    return CorsPolicy(
        allow_origins=tuple(
            within(f"allow_origin_string_match[{index}]", translate_string_matcher, matcher)
            for index, matcher in enumerate(m.allow_origin_string_match)),
        allow_methods=m.allow_methods, allow_headers=m.allow_headers,
        expose_headers=m.expose_headers, max_age=m.max_age,
        allow_credentials=_optional_bool(m, "allow_credentials"),
        allow_private_network_access=_optional_bool(m, "allow_private_network_access"),
        forward_not_matching_preflights=_optional_bool(m, "forward_not_matching_preflights"),
        filter_enabled=_fraction(m.filter_enabled) if m.HasField("filter_enabled") else None,
        shadow_enabled=_fraction(m.shadow_enabled) if m.HasField("shadow_enabled") else None,
    )


@dataclass(frozen=True)
class CorsFilterConfig:
    """The `Cors` filter config: no fields in Envoy 1.40."""


def _first(policies: list[CorsPolicy], name: str, default: Any) -> Any:
    """The first policy's non-empty value of `name` (Envoy's allowMethods() & co.)."""
    for policy in policies:
        value = getattr(policy, name)
        if value is not None and value != "" and value != ():
            return value
    return default


def policies_for(stream: HttpStream, name: str) -> list[CorsPolicy]:
    """The CORS policies of the stream's route, most specific first (Envoy's
    initializeCorsPolicies): per-route configs, else the deprecated route and virtual host
    `cors`. None for no route or one that does not forward."""
    route = resolve_route(stream)
    if route is None or not isinstance(route.action, ForwardAction):
        return []
    policies = [config for config in per_filter_configs(stream, name, NAME)
                if isinstance(config, CorsPolicy)]
    if not policies:
        vhost = stream.virtual_host
        for policy in (route.action.cors, vhost.cors if vhost is not None else None):
            if policy is not None:
                policies.append(policy)
    return policies


class CorsFilter(HttpFilter):
    __slots__ = ("counters", "name", "origin", "policies", "rng")

    def __init__(self, name: str, counters: tuple[Any, Any], rng: random.Random) -> None:
        self.name = name
        self.counters = counters  # (origin_valid, origin_invalid)
        self.rng = rng
        self.policies: list[CorsPolicy] = []
        self.origin = ""  # the allowed origin of a CORS request (Envoy's latched_origin_)

    def on_request_headers(self, stream: HttpStream) -> LocalReply | None:
        policies = self.policies = policies_for(stream, self.name)
        if not policies:
            return None
        first = policies[0]
        enabled = first.enabled(self.rng)
        if not enabled and not first.shadow(self.rng):
            return None
        headers = stream.request.headers
        origin = headers.get("origin")
        if not origin:
            return None
        allowed = self._origin_allowed(origin)
        self.counters[0 if allowed else 1].inc()
        if allowed:
            self.origin = origin
        # Envoy evaluates `shadowEnabled() && !enabled()` afresh here: a second draw each.
        if first.shadow(self.rng) and not first.enabled(self.rng):
            self.policies = []  # shadow mode: counted, nothing else
            return None
        if stream.request.method != "OPTIONS" or not headers.get("access-control-request-method"):
            return None
        if not allowed and _first(policies, "forward_not_matching_preflights", True):
            return None
        return LocalReply(200, headers=self._preflight_headers(headers, allowed),
                          details="cors_response", verbatim=True)

    def _origin_allowed(self, origin: str) -> bool:
        return any(matcher.matches("*") or matcher.matches(origin)
                   for matcher in _first(self.policies, "allow_origins", ()))

    def _preflight_headers(self, request: Headers, allowed: bool) -> Headers:
        policies = self.policies
        headers = Headers()
        if allowed:
            headers.set("access-control-allow-origin", self.origin)
        if _first(policies, "allow_credentials", False):
            headers.set("access-control-allow-credentials", "true")
        for name, asked in (("methods", "method"), ("headers", "headers")):
            allowed_values = _first(policies, f"allow_{name}", "")
            if allowed_values == "*":  # echo what the preflight asks for
                allowed_values = request.get(f"access-control-request-{asked}") or ""
                headers.set(f"access-control-allow-{name}", allowed_values)
            elif allowed_values:
                headers.set(f"access-control-allow-{name}", allowed_values)
        max_age = _first(policies, "max_age", "")
        if max_age:
            headers.set("access-control-max-age", max_age)
        if _first(policies, "allow_private_network_access", False) \
                and request.get("access-control-request-private-network") == "true":
            headers.set("access-control-allow-private-network", "true")
        return headers

    def on_response_headers(self, stream: HttpStream, head: ResponseHead) -> None:
        if not self.policies or not self.origin:
            return
        headers = head.headers
        headers.set("access-control-allow-origin", self.origin)
        if _first(self.policies, "allow_credentials", False):
            headers.set("access-control-allow-credentials", "true")
        expose = _first(self.policies, "expose_headers", "")
        if expose:
            headers.set("access-control-expose-headers", expose)


class CorsFactory:
    name = NAME
    config_type = "envoy.extensions.filters.http.cors.v3.Cors"
    per_route_type = "envoy.extensions.filters.http.cors.v3.CorsPolicy"

    def translate(self, message: Message) -> CorsFilterConfig:
        reject_unsupported(message, ())  # Cors has no fields of its own
        return CorsFilterConfig()

    def translate_per_route(self, message: Message) -> CorsPolicy:
        return translate_policy(message)

    def create(self, config: CorsFilterConfig, context: ServerContext, *,
               stat_prefix: str = "", name: str = "") -> FilterMaker:
        prefix = f"http.{stat_prefix}.cors."
        counters = (context.stats.counter(prefix + "origin_valid"),
                    context.stats.counter(prefix + "origin_invalid"))
        rng = random.Random()
        filter_name = name or NAME
        return lambda: CorsFilter(filter_name, counters, rng)


register_http_filter(CorsFactory())
