"""Every match kind of RouteMatch and every virtual-host domain form, without sockets."""

from __future__ import annotations

import pytest

from proxy.http.routing import match_route, select_cluster, select_virtual_host
from proxy.model.route import ForwardAction
from tests.unit.proxy.http.routes import one_host, request, route_config


def _cluster_of(config, req) -> str | None:  # type: ignore[no-untyped-def]
    vhost = select_virtual_host(config, req.authority)
    if vhost is None:
        return None
    route = match_route(vhost, req)
    if route is None:
        return None
    assert isinstance(route.action, ForwardAction)
    return route.action.cluster


def _to(cluster: str, **match: object) -> dict[str, object]:
    return {"match": match, "route": {"cluster": cluster}}


def test_virtual_host_precedence_exact_suffix_prefix_default() -> None:
    config = route_config({"virtual_hosts": [
        {"name": "default", "domains": ["*"], "routes": [_to("default", prefix="/")]},
        {"name": "exact", "domains": ["api.example.com"], "routes": [_to("exact", prefix="/")]},
        {"name": "short", "domains": ["*.com"], "routes": [_to("short", prefix="/")]},
        {"name": "long", "domains": ["*.example.com"], "routes": [_to("long", prefix="/")]},
        {"name": "prefix", "domains": ["api.*"], "routes": [_to("prefix", prefix="/")]},
    ]})
    assert _cluster_of(config, request(authority="API.example.com")) == "exact"
    assert _cluster_of(config, request(authority="www.example.com")) == "long"
    assert _cluster_of(config, request(authority="foo.com")) == "short"
    assert _cluster_of(config, request(authority="api.example.org")) == "prefix"
    assert _cluster_of(config, request(authority="other.org")) == "default"
    # a wildcard never matches the empty string
    assert _cluster_of(config, request(authority=".com")) == "default"


def test_port_in_host_matters_unless_ignored() -> None:
    vhosts = [{"name": "a", "domains": ["a.test"], "routes": [_to("a", prefix="/")]}]
    assert _cluster_of(route_config({"virtual_hosts": vhosts}),
                       request(authority="a.test:8080")) is None
    ignoring = route_config({"virtual_hosts": vhosts, "ignore_port_in_host_matching": True})
    assert _cluster_of(ignoring, request(authority="a.test:8080")) == "a"


@pytest.mark.parametrize(("match", "path", "expected"), [
    ({"prefix": "/api"}, "/api/v1", True),
    ({"prefix": "/api"}, "/apiary", True),
    ({"prefix": "/api"}, "/API", False),
    ({"prefix": "/api", "case_sensitive": False}, "/API/x", True),
    ({"path": "/exact"}, "/exact?q=1", True),
    ({"path": "/exact"}, "/exact/", False),
    ({"safe_regex": {"regex": "/items/[0-9]+"}}, "/items/42?x", True),
    ({"safe_regex": {"regex": "/items/[0-9]+"}}, "/items/42/more", False),
    ({"path_separated_prefix": "/api"}, "/api", True),
    ({"path_separated_prefix": "/api"}, "/api/x", True),
    ({"path_separated_prefix": "/api"}, "/apiary", False),
    ({"path_separated_prefix": "/api"}, "/api?x=1", True),
])
def test_path_matches(match: dict[str, object], path: str, expected: bool) -> None:
    config = one_host(_to("hit", **match))
    assert (_cluster_of(config, request(path)) == "hit") is expected


@pytest.mark.parametrize(("matcher", "headers", "expected"), [
    ({"name": "x-v", "string_match": {"exact": "1"}}, [("x-v", "1")], True),
    ({"name": "x-v", "string_match": {"exact": "1"}}, [("x-v", "2")], False),
    ({"name": "x-v", "string_match": {"prefix": "ab"}}, [("x-v", "abc")], True),
    ({"name": "x-v", "string_match": {"suffix": "bc"}}, [("x-v", "abc")], True),
    ({"name": "x-v", "string_match": {"contains": "b"}}, [("x-v", "abc")], True),
    ({"name": "x-v", "string_match": {"exact": "ABC", "ignore_case": True}},
     [("x-v", "abc")], True),
    ({"name": "x-v", "safe_regex_match": {"regex": "\\d{3}"}}, [("x-v", "123")], True),
    ({"name": "x-v", "safe_regex_match": {"regex": "\\d{3}"}}, [("x-v", "1234")], False),
    ({"name": "x-v", "safe_regex_match": {"regex": "\\d{3}"}, "invert_match": True},
     [("x-v", "1234")], True),
    ({"name": "x-v", "present_match": True}, [("x-v", "")], True),
    ({"name": "x-v", "present_match": True}, [], False),
    ({"name": "x-v", "present_match": True, "invert_match": True}, [], True),
    ({"name": "x-v", "present_match": False}, [], True),
    ({"name": "x-v", "string_match": {"exact": "1"}, "invert_match": True}, [], False),
    ({"name": "x-v", "string_match": {"exact": ""}, "treat_missing_header_as_empty": True},
     [], True),
    ({"name": "x-v", "range_match": {"start": 10, "end": 20}}, [("x-v", "15")], True),
    ({"name": "x-v", "range_match": {"start": 10, "end": 20}}, [("x-v", "20")], False),
    ({"name": "x-v", "string_match": {"exact": "1,2"}}, [("x-v", "1"), ("x-v", "2")], True),
    ({"name": ":method", "string_match": {"exact": "GET"}}, [], True),
    ({"name": "x-v", "exact_match": "legacy"}, [("x-v", "legacy")], True),
])
def test_header_matchers(matcher: dict[str, object], headers: list[tuple[str, str]],
                         expected: bool) -> None:
    config = one_host(_to("hit", prefix="/", headers=[matcher]))
    assert (_cluster_of(config, request(headers=tuple(headers))) == "hit") is expected


@pytest.mark.parametrize(("matcher", "query", "expected"), [
    ({"name": "debug", "present_match": True}, "debug=", True),
    ({"name": "debug", "present_match": True}, "other=1", False),
    ({"name": "v", "string_match": {"exact": "2"}}, "v=2&v=3", True),
    ({"name": "v", "string_match": {"exact": "3"}}, "v=2&v=3", False),
    ({"name": "v", "string_match": {"safe_regex": {"regex": "[0-9]"}}}, "v=7", True),
])
def test_query_parameter_matchers(matcher: dict[str, object], query: str,
                                  expected: bool) -> None:
    config = one_host(_to("hit", prefix="/", query_parameters=[matcher]))
    assert (_cluster_of(config, request(f"/p?{query}")) == "hit") is expected


def test_grpc_match_needs_grpc_content_type() -> None:
    config = one_host(_to("grpc", prefix="/", grpc={}), _to("plain", prefix="/"))
    grpc = request("/pkg.Svc/Call", headers=(("content-type", "application/grpc+proto"),))
    assert _cluster_of(config, grpc) == "grpc"
    assert _cluster_of(config, request("/pkg.Svc/Call")) == "plain"


def test_first_matching_route_wins() -> None:
    config = one_host(_to("first", prefix="/a"), _to("second", prefix="/"))
    assert _cluster_of(config, request("/a/b")) == "first"
    assert _cluster_of(config, request("/b")) == "second"


def test_weighted_and_header_cluster_selection() -> None:
    config = one_host(
        {"match": {"prefix": "/w"}, "route": {"weighted_clusters": {"clusters": [
            {"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]}}},
        {"match": {"prefix": "/h"}, "route": {"cluster_header": "X-Cluster"}},
    )
    vhost = config.virtual_hosts[0]
    weighted = vhost.routes[0].action
    assert isinstance(weighted, ForwardAction)
    picks = [select_cluster(weighted, request("/w"), value)[0] for value in range(100)]
    assert picks.count("stable") == 90 and picks.count("canary") == 10
    by_header = vhost.routes[1].action
    assert isinstance(by_header, ForwardAction)
    assert select_cluster(by_header, request("/h", headers=(("x-cluster", "blue"),)), 0)[0] \
        == "blue"
    assert select_cluster(by_header, request("/h"), 0)[0] == ""


def test_many_virtual_hosts_and_repeated_lookups() -> None:
    # A mesh sidecar's outbound table: one virtual host per service, looked up by map.
    hosts = [{"name": f"svc{i}", "domains": [f"svc{i}", f"svc{i}:80"],
              "routes": [_to(f"c{i}", prefix="/")]} for i in range(500)]
    hosts.append({"name": "wild", "domains": ["*.mesh", "*.b.mesh"],
                  "routes": [_to("b", prefix="/")]})
    hosts.append({"name": "wild2", "domains": ["*.a.mesh"], "routes": [_to("a", prefix="/")]})
    config = route_config({"virtual_hosts": hosts})
    for _ in range(2):  # the second round is answered from the memo
        assert _cluster_of(config, request(authority="svc417:80")) == "c417"
        assert _cluster_of(config, request(authority="x.a.mesh")) == "a"  # longest suffix
        assert _cluster_of(config, request(authority="x.b.mesh")) == "b"
        assert _cluster_of(config, request(authority="x.mesh")) == "b"
        assert _cluster_of(config, request(authority="unknown")) is None
    # Hosts come from clients: the memo stays bounded.
    for i in range(3000):
        select_virtual_host(config, f"random{i}.example")
    assert len(config.lookup_cache["hosts"].memo) <= 1024
