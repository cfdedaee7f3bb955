"""RouteConfiguration -> model: actions, header manipulation, policies, refusals by name."""

from __future__ import annotations

import pytest

from protos.errors import ConfigError
from proxy.model.route import (
    DirectResponseAction,
    ForwardAction,
    MirrorPolicy,
    RedirectAction,
    mirror_policies,
    per_filter_config,
    request_buffer_limit,
)
from tests.unit.proxy.http.routes import one_host, route_config


def _action(route: dict[str, object]):  # type: ignore[no-untyped-def]
    return one_host({"match": {"prefix": "/"}, **route}).virtual_hosts[0].routes[0].action


def test_forward_action_fields() -> None:
    action = _action({"route": {
        "cluster": "c", "prefix_rewrite": "/new", "host_rewrite_literal": "up.test",
        "timeout": "2.5s", "idle_timeout": "30s", "max_grpc_timeout": "0s",
        "retry_policy": {"retry_on": "5xx,reset,retriable-status-codes", "num_retries": 3,
                         "per_try_timeout": "1s", "retriable_status_codes": [409],
                         "retry_back_off": {"base_interval": "0.01s"}},
        "hash_policy": [{"cookie": {"name": "sticky", "ttl": "60s", "path": "/"}},
                        {"header": {"header_name": "X-User"}},
                        {"connection_properties": {"source_ip": True}},
                        {"query_parameter": {"name": "u"}, "terminal": True}],
        "upgrade_configs": [{"upgrade_type": "websocket"}],
    }})
    assert isinstance(action, ForwardAction)
    assert (action.cluster, action.prefix_rewrite, action.host_rewrite_literal) == \
        ("c", "/new", "up.test")
    assert (action.timeout, action.idle_timeout, action.max_grpc_timeout) == (2.5, 30.0, 0.0)
    retry = action.retry_policy
    assert retry is not None
    assert retry.retry_on == {"5xx", "reset", "retriable-status-codes"}
    assert (retry.num_retries, retry.per_try_timeout, retry.retriable_status_codes) == \
        (3, 1.0, {409})
    assert (retry.backoff_base, retry.backoff_max) == (0.01, pytest.approx(0.1))
    kinds = [(h.kind, h.name, h.cookie_ttl, h.terminal) for h in action.hash_policies]
    assert kinds == [("cookie", "sticky", 60.0, False), ("header", "x-user", None, False),
                     ("source_ip", "", None, False), ("query_parameter", "u", None, True)]
    assert action.upgrades == {"websocket"}


def test_defaults_follow_envoy() -> None:
    action = _action({"route": {"cluster": "c"}})
    assert isinstance(action, ForwardAction)
    assert action.timeout == 15.0 and action.retry_policy is None
    assert action.max_grpc_timeout is None
    retry = _action({"route": {"cluster": "c", "retry_policy": {"retry_on": "5xx"}}}) \
        .retry_policy
    assert retry.num_retries == 1 and retry.backoff_base == 0.025


def test_retriable_headers_are_translated_as_header_matchers() -> None:
    retry = _action({"route": {"cluster": "c", "retry_policy": {
        "retry_on": "reset,retriable-headers",
        "retriable_headers": [{"name": "X-Upstream-Reset", "present_match": True}]}}}
    ).retry_policy
    assert retry.retry_on == {"reset", "retriable-headers"}
    [matcher] = retry.retriable_headers
    assert (matcher.name, matcher.present) == ("x-upstream-reset", True)


def test_regex_rewrite_substitutes_groups() -> None:
    action = _action({"route": {"cluster": "c", "regex_rewrite": {
        "pattern": {"regex": "^/service/([^/]+)(/.*)$"}, "substitution": "\\2/instance/\\1"}}})
    assert action.regex_rewrite.apply("/service/foo/v1/api") == "/v1/api/instance/foo"


def test_redirect_and_direct_response() -> None:
    redirect = _action({"redirect": {"https_redirect": True, "host_redirect": "secure.test",
                                     "response_code": "PERMANENT_REDIRECT",
                                     "strip_query": True}})
    assert isinstance(redirect, RedirectAction)
    assert (redirect.scheme, redirect.host, redirect.response_code, redirect.strip_query) == \
        ("https", "secure.test", 308, True)
    direct = _action({"direct_response": {"status": 418, "body": {"inline_string": "teapot"}}})
    assert direct == DirectResponseAction(418, b"teapot")


def test_direct_response_body_limit() -> None:
    def config(body: str, **limit: object) -> object:
        return route_config({**limit, "virtual_hosts": [{"name": "vh", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "direct_response": {
                "status": 200, "body": {"inline_string": body}}}]}]})

    config("x" * 4096)  # Envoy's default maximum
    with pytest.raises(ConfigError) as error:
        config("x" * 4097)
    assert "virtual_hosts[0].routes[0].direct_response.body" in str(error.value)
    config("x" * 5000, max_direct_response_body_size_bytes=5000)


def test_header_mutations_at_every_level() -> None:
    config = route_config({
        "request_headers_to_add": [{"header": {"key": "X-Config", "value": "c"}}],
        "response_headers_to_remove": ["server"],
        "internal_only_headers": ["X-Internal"],
        "virtual_hosts": [{
            "name": "vh", "domains": ["*"],
            "request_headers_to_add": [{
                "header": {"key": "x-client", "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "c"},
                        "response_headers_to_add": [{"header": {"key": "x-r", "value": "100%%"},
                                                     "append": False}]}]}]})
    assert config.mutations.request_add[0].name == "x-config"
    assert config.mutations.response_remove == ("server",)
    assert config.internal_only_headers == ("x-internal",)
    vhost_add = config.virtual_hosts[0].mutations.request_add[0]
    assert vhost_add.append_action == "OVERWRITE_IF_EXISTS_OR_ADD"
    assert vhost_add.value.parts == (("DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", ""),)
    route_add = config.virtual_hosts[0].routes[0].mutations.response_add[0]
    assert route_add.append_action == "OVERWRITE_IF_EXISTS_OR_ADD"
    assert route_add.value.parts == ("100%",)


@pytest.mark.parametrize(("route", "field"), [
    ({"route": {"cluster": "c", "hedge_policy": {}}}, "hedge_policy"),
    ({"route": {"cluster": "c", "request_mirror_policies": [{"cluster": "m",
                                                             "request_headers_mutations": [
        {"remove": "x-a"}]}]}}, "request_mirror_policies[0].request_headers_mutations"),
    ({"route": {"cluster": "c", "retry_policy": {"retry_on": "magic"}}}, "retry_on"),
    ({"route": {"cluster": "c"}, "tracing": {}}, "tracing"),
    ({"route": {"cluster": "c"}, "stat_prefix": "critical"}, "stat_prefix"),
    ({"route": {"cluster": "c"}, "request_body_buffer_limit": 10}, "request_body_buffer_limit"),
    ({"route": {"cluster": "c"}, "request_headers_to_add": []}, None),
    ({"route": {"cluster": "c"}, "request_headers_to_add": [
        {"header": {"key": "x", "value": "%NOPE%"}}]}, "header.value"),
    ({"route": {"cluster": "c"}, "request_headers_to_add": [
        {"header": {"key": ":path", "value": "x"}}]}, "header.key"),
])
def test_unsupported_fields_are_refused_by_name(route: dict[str, object],
                                                field: str | None) -> None:
    if field is None:
        _action(route)
        return
    with pytest.raises(ConfigError) as caught:
        _action(route)
    assert field in str(caught.value)
    assert "virtual_hosts[0].routes[0]" in str(caught.value)


def test_vhost_level_refusals_and_duplicate_domains() -> None:
    with pytest.raises(ConfigError, match="hedge_policy"):
        route_config({"virtual_hosts": [{"name": "v", "domains": ["*"], "hedge_policy": {}}]})
    with pytest.raises(ConfigError, match="vhds"):
        route_config({"vhds": {}, "virtual_hosts": []})
    with pytest.raises(ConfigError, match=r"a\.test"):
        route_config({"virtual_hosts": [{"name": "x", "domains": ["a.test"]},
                                        {"name": "y", "domains": ["a.test"]}]})
    with pytest.raises(ConfigError, match="total_weight"):
        _action({"route": {"weighted_clusters": {"total_weight": 5, "clusters": [
            {"name": "a", "weight": 1}]}}})


def test_per_request_buffer_limit_route_over_virtual_host() -> None:
    config = route_config({"virtual_hosts": [
        {"name": "limited", "domains": ["a.test"], "per_request_buffer_limit_bytes": 65536,
         "routes": [{"match": {"prefix": "/own"}, "route": {"cluster": "c"},
                     "per_request_buffer_limit_bytes": 4194304},
                    {"match": {"prefix": "/zero"}, "route": {"cluster": "c"},
                     "per_request_buffer_limit_bytes": 0},
                    {"match": {"prefix": "/"}, "route": {"cluster": "c"}}]},
        {"name": "plain", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "c"}}]}]})
    limited, plain = config.virtual_hosts
    own, zero, inherits = limited.routes
    assert request_buffer_limit(own, limited) == 4194304  # larger than the vhost's: it wins
    assert request_buffer_limit(zero, limited) == 0
    assert request_buffer_limit(inherits, limited) == 65536
    assert request_buffer_limit(plain.routes[0], plain) is None  # the listener's limit
    assert request_buffer_limit(None, None) is None


FAULT = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
FILTER_CONFIG = "type.googleapis.com/envoy.config.route.v3.FilterConfig"
CSRF = "type.googleapis.com/envoy.extensions.filters.http.csrf.v3.CsrfPolicy"


def _abort(status: int) -> dict[str, object]:
    return {"@type": FAULT, "abort": {"http_status": status,
                                      "percentage": {"numerator": 100}}}


def test_typed_per_filter_config_at_each_level() -> None:
    config = route_config({
        "typed_per_filter_config": {"fault": _abort(500)},
        "virtual_hosts": [{
            "name": "v", "domains": ["*"],
            "typed_per_filter_config": {"fault": {"@type": FILTER_CONFIG,
                                                  "config": _abort(501)}},
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "c"},
                        "typed_per_filter_config": {
                            "fault": _abort(502),
                            "csrf": {"@type": FILTER_CONFIG, "is_optional": True,
                                     "config": {"@type": CSRF}}}}]}]})
    levels = (config, config.virtual_hosts[0], config.virtual_hosts[0].routes[0])
    assert [per_filter_config(level.per_filter, "fault").abort.http_status
            for level in levels] == [500, 501, 502]
    # An optional config no filter of ours takes is skipped, as Envoy skips it.
    assert per_filter_config(levels[2].per_filter, "csrf") is None


@pytest.mark.parametrize(("entry", "words"), [
    ({"@type": CSRF}, "csrf.v3.CsrfPolicy is not supported by Pointsman"),
    ({"@type": FILTER_CONFIG, "config": {"@type": CSRF}}, "not supported by Pointsman"),
    ({"@type": FILTER_CONFIG, "disabled": True}, "disabled"),
    ({"@type": FAULT, "abort": {"http_status": 700}}, "abort.http_status"),
])
def test_per_filter_configs_we_cannot_apply_are_refused_by_name(entry: dict[str, object],
                                                                 words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        route_config({"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "c"},
             "typed_per_filter_config": {"x": entry}}]}]})
    assert "virtual_hosts[0].routes[0].typed_per_filter_config[x]" in str(caught.value)
    assert words in str(caught.value)


def test_mirror_policies_are_inherited_route_then_vhost_then_config() -> None:
    config = route_config({
        "request_mirror_policies": [{"cluster": "top"}],
        "virtual_hosts": [
            {"name": "v", "domains": ["v.test"],
             "request_mirror_policies": [{"cluster": "vhost", "runtime_fraction": {
                 "default_value": {"numerator": 25, "denominator": "TEN_THOUSAND"},
                 "runtime_key": "k"}}],
             "routes": [
                 {"match": {"prefix": "/own"}, "route": {
                     "cluster": "c", "request_mirror_policies": [
                         {"cluster_header": "X-Mirror", "trace_sampled": False,
                          "disable_shadow_host_suffix_append": True}]}},
                 {"match": {"prefix": "/"}, "route": {"cluster": "c"}}]},
            {"name": "w", "domains": ["*"],
             "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "c"}}]}]})
    own, inherited = config.virtual_hosts[0].routes
    other = config.virtual_hosts[1].routes[0]
    assert isinstance(own.action, ForwardAction)
    assert mirror_policies(own.action, config.virtual_hosts[0], config) == (MirrorPolicy(
        cluster_header="x-mirror", trace_sampled=False,
        disable_shadow_host_suffix_append=True),)
    assert isinstance(inherited.action, ForwardAction) and isinstance(other.action, ForwardAction)
    assert mirror_policies(inherited.action, config.virtual_hosts[0], config) == (
        MirrorPolicy(cluster="vhost", numerator=25, denominator=10_000),)
    assert mirror_policies(other.action, config.virtual_hosts[1], config) == (
        MirrorPolicy(cluster="top"),)
    assert ("vhost", "virtual_hosts[0].request_mirror_policies[0].cluster") in \
        config.referenced_clusters()


@pytest.mark.parametrize(("policy", "words"), [
    ({}, "Exactly one of cluster or cluster_header"),
    ({"cluster": "a", "cluster_header": "b"}, "Only one of cluster"),
])
def test_mirror_policy_needs_one_cluster_specifier(policy: dict[str, object],
                                                   words: str) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        _action({"route": {"cluster": "c", "request_mirror_policies": [policy]}})
    assert "request_mirror_policies[0]" in str(caught.value)
