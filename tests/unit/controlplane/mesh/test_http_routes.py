"""HTTPRoute rules compiled for mesh callers, checked with the sidecar's own matcher
(controlplane.mesh.explain): precedence across rules and routes, every filter, weights,
invalid backends, timeouts, retries and session persistence."""

from __future__ import annotations

import pytest

from controlplane.resources import ROUTE
from tests.unit.controlplane.mesh.helpers import (
    SERVICES,
    as_dict,
    ask,
    clusters_of,
    compiled,
    mesh_of,
    route,
    sidecar,
)

PRECEDENCE = SERVICES + route("""
rules:
- matches: [{path: {type: PathPrefix, value: /}}]
  backendRefs: [{name: api-v1, port: 8080}]
- matches: [{path: {type: PathPrefix, value: /v2}}, {headers: [{name: version, value: two}]}]
  backendRefs: [{name: api-v2, port: 8080}]
- matches: [{path: {type: Exact, value: /v2/exact}}]
  backendRefs: [{name: api, port: 8080}]
- matches: [{path: {type: PathPrefix, value: /v2/longer}, method: POST}]
  backendRefs: [{name: api, port: 8080}]
""")


@pytest.mark.parametrize(("path", "headers", "method", "expected"), [
    ("/", (), "GET", "default/api-v1"),
    ("/example", (), "GET", "default/api-v1"),
    ("/v2", (), "GET", "default/api-v2"),
    ("/v2/", (), "GET", "default/api-v2"),
    ("/v2/example", (), "GET", "default/api-v2"),
    ("/v2example", (), "GET", "default/api-v1"),  # not a path-element prefix
    ("/foo/v2/example", (), "GET", "default/api-v1"),
    ("/", (("version", "two"),), "GET", "default/api-v2"),  # more header matches win
    ("/v2/exact", (), "GET", "default/api"),  # Exact before any prefix
    ("/v2/exact/more", (), "GET", "default/api-v2"),
    ("/v2/longer/x", (), "POST", "default/api"),  # the longest prefix
    ("/v2/longer/x", (), "GET", "default/api-v2"),
])
def test_precedence_follows_the_spec(path: str, headers: tuple[tuple[str, str], ...],
                                     method: str, expected: str) -> None:
    """Translated from Gateway API's conformance test MeshHTTPRouteMatching, plus exact,
    method and length cases (httproute_types.go, HTTPRouteRule.Matches)."""
    answer = ask(mesh_of(PRECEDENCE), "web", f"http://api:8080{path}", *headers,
                 method=method)
    assert answer.action == "forward"
    assert clusters_of(answer) == {expected: 100.0}


def test_ties_go_to_the_oldest_route_then_by_name() -> None:
    rule = """
    rules:
    - matches: [{path: {type: PathPrefix, value: /same}}]
      backendRefs: [{name: BACKEND, port: 8080}]
    """
    text = SERVICES + route(rule.replace("BACKEND", "api-v1"), name="b",
                            created="2024-01-02T00:00:00Z") \
        + route(rule.replace("BACKEND", "api-v2"), name="a", created="2024-01-03T00:00:00Z")
    assert clusters_of(ask(mesh_of(text), "web", "http://api:8080/same")) == \
        {"default/api-v1": 100.0}
    untimed = SERVICES + route(rule.replace("BACKEND", "api-v1"), name="b") \
        + route(rule.replace("BACKEND", "api-v2"), name="a")
    assert clusters_of(ask(mesh_of(untimed), "web", "http://api:8080/same")) == \
        {"default/api-v2": 100.0}


def test_a_service_without_routes_is_reached_as_is_and_with_routes_unmatched_is_404() -> None:
    mesh = mesh_of(SERVICES + route("""
    rules:
    - matches: [{path: {type: Exact, value: /only}}]
      backendRefs: [{name: api-v1, port: 8080}]
    """))
    assert clusters_of(ask(mesh, "web", "http://api-v2:8080/any")) == {"default/api-v2": 100.0}
    answer = ask(mesh, "web", "http://api:8080/other")
    assert (answer.action, answer.status) == ("none", 404)


def test_query_parameters_and_regular_expressions() -> None:
    mesh = mesh_of(SERVICES + route("""
    rules:
    - matches: [{queryParams: [{name: beta, value: "1"}]}]
      backendRefs: [{name: api-v2, port: 8080}]
    - matches: [{path: {type: RegularExpression, value: "/users/[0-9]+"},
                 headers: [{type: RegularExpression, name: x-tier, value: "gold|silver"}]}]
      backendRefs: [{name: api, port: 8080}]
    - backendRefs: [{name: api-v1, port: 8080}]
    """))
    assert clusters_of(ask(mesh, "web", "http://api:8080/x?beta=1")) == {"default/api-v2": 100.0}
    assert clusters_of(ask(mesh, "web", "http://api:8080/users/42", ("x-tier", "gold"))) == \
        {"default/api": 100.0}
    assert clusters_of(ask(mesh, "web", "http://api:8080/users/ab", ("x-tier", "gold"))) == \
        {"default/api-v1": 100.0}


def test_weights_and_invalid_backends() -> None:
    mesh = mesh_of(SERVICES + route("""
    rules:
    - matches: [{path: {value: /split}}]
      backendRefs:
      - {name: api-v1, port: 8080, weight: 3}
      - {name: api-v2, port: 8080, weight: 1}
      - {name: api, port: 8080, weight: 0}
    - matches: [{path: {value: /half-broken}}]
      backendRefs:
      - {name: api-v1, port: 8080}
      - {name: ghost, port: 8080}
    - matches: [{path: {value: /broken}}]
      backendRefs: [{name: ghost, port: 8080}]
    - matches: [{path: {value: /zero}}]
      backendRefs: [{name: api-v1, port: 8080, weight: 0}]
    """))
    assert clusters_of(ask(mesh, "web", "http://api:8080/split")) == {
        "default/api-v1": 75.0, "default/api-v2": 25.0}
    half = ask(mesh, "web", "http://api:8080/half-broken")
    assert [backend.share for backend in half.backends] == [50.0, 50.0]
    assert "invalid" in half.backends[1].cluster  # answered with 500 by the sidecar
    for path in ("/broken", "/zero"):
        answer = ask(mesh, "web", f"http://api:8080{path}")
        assert (answer.action, answer.status) == ("direct_response", 500)
    table = as_dict(compiled(mesh, sidecar("web")), ROUTE.type_url, "outbound|8080")
    broken = next(item for item in table["virtual_hosts"] if item["name"] == "api.default:8080")
    half_route = next(item for item in broken["routes"] if item["match"].get(
        "path_separated_prefix") == "/half-broken")
    assert half_route["route"]["cluster_not_found_response_code"] == "INTERNAL_SERVER_ERROR"


def test_redirects() -> None:
    mesh = mesh_of(SERVICES + route("""
    rules:
    - matches: [{path: {value: /secure}}]
      filters: [{type: RequestRedirect, requestRedirect: {scheme: https, statusCode: 301}}]
    - matches: [{path: {value: /moved}}]
      filters:
      - type: RequestRedirect
        requestRedirect:
          hostname: example.org
          path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}
    - matches: [{path: {value: /full}}]
      filters:
      - type: RequestRedirect
        requestRedirect: {port: 8443, path: {type: ReplaceFullPath, replaceFullPath: /x}}
    """))
    secure = ask(mesh, "web", "http://api:8080/secure/a")
    assert (secure.status, secure.location) == (301, "https://api/secure/a")
    moved = ask(mesh, "web", "http://api:8080/moved/b?q=1")
    assert (moved.status, moved.location) == (302, "http://example.org:8080/new/b?q=1")
    full = ask(mesh, "web", "http://api:8080/full/c")
    assert (full.status, full.location) == (302, "http://api:8443/x")


@pytest.mark.parametrize(("prefix", "replacement", "path", "expected"), [
    # HTTPPathModifier.ReplacePrefixMatch's table (httproute_types.go)
    ("/foo", "/xyz", "/foo/bar", "/xyz/bar"),
    ("/foo", "/xyz/", "/foo/bar", "/xyz/bar"),
    ("/foo/", "/xyz", "/foo/bar", "/xyz/bar"),
    ("/foo/", "/xyz/", "/foo/bar", "/xyz/bar"),
    ("/foo", "/xyz", "/foo", "/xyz"),
    ("/foo", "/xyz", "/foo/", "/xyz/"),
    ("/foo", "", "/foo/bar", "/bar"),
    ("/foo", "", "/foo/", "/"),
    ("/foo", "", "/foo", "/"),
    ("/foo", "/", "/foo/", "/"),
    ("/foo", "/", "/foo", "/"),
])
def test_replace_prefix_match_follows_the_spec_table(prefix: str, replacement: str,
                                                     path: str, expected: str) -> None:
    from proxy.codec.headers import Headers, RequestHead
    from proxy.http.forward_plan import rewrite_path
    from proxy.http.routing import match_route, select_virtual_host
    from proxy.model.route import translate_route_configuration

    mesh = mesh_of(SERVICES + route(f"""
    rules:
    - matches: [{{path: {{value: "{prefix}"}}}}]
      filters:
      - type: URLRewrite
        urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: "{replacement}"}}}}
      backendRefs: [{{name: api-v1, port: 8080}}]
    """))
    resources = compiled(mesh, sidecar("web"))
    from envoy.config.route.v3 import route_pb2
    message = route_pb2.RouteConfiguration()
    resources.resources[ROUTE.type_url]["outbound|8080"].packed.Unpack(message)
    table = translate_route_configuration(message)
    request = RequestHead("GET", path, "api", headers=Headers())
    found = match_route(select_virtual_host(table, "api"), request)
    assert found is not None
    action = found.action
    assert rewrite_path(path, found, action.prefix_rewrite, action.regex_rewrite) == expected


def test_filters_timeouts_and_retries_compile_to_envoy_fields() -> None:
    mesh = mesh_of(SERVICES + route("""
    rules:
    - filters:
      - type: RequestHeaderModifier
        requestHeaderModifier: {set: [{name: X-Set, value: a}], add: [{name: X-Add, value: b}],
                                remove: [X-Gone]}
      - type: ResponseHeaderModifier
        responseHeaderModifier: {set: [{name: X-Out, value: c}]}
      - type: URLRewrite
        urlRewrite: {hostname: internal.example}
      backendRefs:
      - name: api-v1
        port: 8080
        filters:
        - type: RequestHeaderModifier
          requestHeaderModifier: {set: [{name: X-Backend, value: v1}]}
      timeouts: {request: 10s, backendRequest: 2s}
      retry: {codes: [502, 503], attempts: 3, backoff: 100ms}
    """))
    table = as_dict(compiled(mesh, sidecar("web")), ROUTE.type_url, "outbound|8080")
    [entry] = next(item for item in table["virtual_hosts"]
               if item["name"] == "api.default:8080")["routes"]
    assert entry["request_headers_to_add"] == [
        {"header": {"key": "X-Set", "value": "a"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
        {"header": {"key": "X-Add", "value": "b"}}]  # APPEND_IF_EXISTS_OR_ADD, the default
    assert entry["request_headers_to_remove"] == ["x-gone"]
    assert entry["response_headers_to_add"][0]["header"] == {"key": "X-Out", "value": "c"}
    action = entry["route"]
    assert action["host_rewrite_literal"] == "internal.example"
    assert action["timeout"] == "10s"
    assert action["retry_policy"] == {
        "retry_on": "connect-failure,refused-stream,reset,retriable-headers,"
                    "retriable-status-codes",
        "num_retries": 3, "per_try_timeout": "2s", "retriable_status_codes": [502, 503],
        "retry_back_off": {"base_interval": "0.100s"},
        # a backend sidecar's 503 for its application's reset is retried as the reset
        "retriable_headers": [{"name": "x-pointsman-upstream-reset", "present_match": True}]}
    [backend] = action["weighted_clusters"]["clusters"]
    assert backend["request_headers_to_add"][0]["header"] == {"key": "X-Backend",
                                                              "value": "v1"}


def test_unset_timeouts_disable_envoys_default() -> None:
    table = as_dict(compiled(mesh_of(SERVICES), sidecar("web")), ROUTE.type_url,
                    "outbound|8080")
    for vhost in table["virtual_hosts"]:
        assert vhost["routes"][0]["route"]["timeout"] == "0s"


def test_session_persistence_is_a_cookie_hash_on_a_maglev_variant() -> None:
    mesh = mesh_of(SERVICES + route("""
    rules:
    - backendRefs: [{name: api-v1, port: 8080}]
      sessionPersistence: {sessionName: SRVID}
    """))
    resources = compiled(mesh, sidecar("web"))
    answer = ask(mesh, "web", "http://api:8080/")
    [backend] = answer.backends
    assert backend.cluster.startswith("outbound|8080|") and "||" not in backend.cluster
    assert backend.load_balancer == "MAGLEV"
    assert "consistent hash on cookie SRVID" in answer.policies
    table = as_dict(resources, ROUTE.type_url, "outbound|8080")
    entry = next(item for item in table["virtual_hosts"]
             if item["name"] == "api.default:8080")["routes"][0]
    assert entry["route"]["hash_policy"] == [{"cookie": {"name": "SRVID", "ttl": "0s",
                                                         "path": "/"}}]


def test_mirror_and_cors_compile_to_envoys_shapes() -> None:
    mesh = mesh_of(SERVICES + route("""
    rules:
    - filters:
      - type: RequestMirror
        requestMirror: {backendRef: {name: api-v2, port: 8080}, percent: 25}
      - type: CORS
        cors: {allowOrigins: ["https://*.example.com"], allowMethods: [GET, POST],
               allowCredentials: true, maxAge: 60}
      backendRefs: [{name: api-v1, port: 8080}]
    """))
    resources = compiled(mesh, sidecar("web"))
    table = as_dict(resources, ROUTE.type_url, "outbound|8080")
    entry = next(item for item in table["virtual_hosts"]
             if item["name"] == "api.default:8080")["routes"][0]
    assert entry["route"]["request_mirror_policies"] == [{
        "cluster": "outbound|8080||api-v2.default",
        "runtime_fraction": {"default_value": {"numerator": 250000,
                                               "denominator": "MILLION"}}}]
    cors = entry["typed_per_filter_config"]["envoy.filters.http.cors"]
    assert cors["allow_origin_string_match"] == [{"safe_regex": {
        "regex": r"https://[^/]*\.example\.com"}}]
    assert cors["allow_methods"] == "GET,POST" and cors["allow_credentials"] is True
    assert cors["max_age"] == "60"
    # HTTPCORSFilter: the gateway answers a preflight from an origin not allowed itself
    assert cors["forward_not_matching_preflights"] is False
    listener = as_dict(resources, "type.googleapis.com/envoy.config.listener.v3.Listener",
                       "outbound|8080")
    filters = listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
    assert [item["name"] for item in filters] == ["envoy.filters.http.cors",
                                                  "envoy.filters.http.router"]


def test_explain_tells_envoy_only_fields_without_matching_on_them() -> None:
    mesh = mesh_of(SERVICES + route("""
    rules:
    - filters:
      - type: RequestMirror
        requestMirror: {backendRef: {name: api-v2, port: 8080}}
      - type: CORS
        cors: {allowOrigins: ["*"]}
      backendRefs: [{name: api-v1, port: 8080}]
    """))
    answer = ask(mesh, "web", "http://api:8080/")
    assert clusters_of(answer) == {"default/api-v1": 100.0}
    assert "mirrored to outbound|8080||api-v2.default" in answer.policies
    assert "cors (per-route envoy.filters.http.cors)" in answer.policies
