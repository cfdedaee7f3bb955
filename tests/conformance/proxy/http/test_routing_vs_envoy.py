"""Differential: one bootstrap in real Envoy and in `pointsman proxy`, the same requests to both.

For every case we compare the status, which backend answered, the path/authority/headers the
backend saw (minus per-request random values) and the response headers we care about. The
route configuration exercises every match kind, every action and the header manipulation
levels; a second listener runs with use_remote_address for the XFF rules.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.envoy import Envoy
from tests.support.http_backends import EchoBackend
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance

HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
       ".HttpConnectionManager")
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}

# Headers whose values differ per request or per proxy run.
VOLATILE_UPSTREAM = {"x-request-id", "x-envoy-upstream-service-time", "x-client-port"}
RESPONSE_HEADERS = ("location", "x-resp-route", "x-resp-vhost", "x-resp-config", "x-backend",
                    "content-type", "server", "x-echo-extra")


def _to(cluster: str, **match: Any) -> dict[str, Any]:
    return {"match": match, "route": {"cluster": cluster}}


def _add(key: str, value: str, action: str = "APPEND_IF_EXISTS_OR_ADD") -> dict[str, Any]:
    return {"header": {"key": key, "value": value}, "append_action": action}


def route_config() -> dict[str, Any]:
    routes = [
        _to("a", path="/exact"),
        _to("b", safe_regex={"regex": "/items/[0-9]+"}),
        _to("c", path_separated_prefix="/sep"),
        _to("a", prefix="/hdr", headers=[{"name": "x-v", "string_match": {"exact": "1"}}]),
        _to("b", prefix="/hdr", headers=[{"name": "x-v", "string_match": {"prefix": "pre"}}]),
        _to("c", prefix="/hdr", headers=[{"name": "x-v",
                                          "safe_regex_match": {"regex": "r[0-9]+"}}]),
        _to("a", prefix="/hdr", headers=[{"name": "x-present", "present_match": True}]),
        _to("b", prefix="/hdr", headers=[{"name": "x-v", "string_match": {"exact": "no"},
                                          "invert_match": True}]),
        _to("c", prefix="/hdr"),
        _to("a", prefix="/q", query_parameters=[{"name": "v", "string_match": {"exact": "1"}}]),
        _to("b", prefix="/q", query_parameters=[{"name": "flag", "present_match": True}]),
        _to("c", prefix="/q"),
        _to("b", prefix="/svc", grpc={}),
        _to("a", prefix="/svc"),
        _to("a", prefix="/CaseLess", case_sensitive=False),
        {"match": {"prefix": "/by-header"}, "route": {"cluster_header": "x-cluster"}},
        {"match": {"prefix": "/weighted"}, "route": {"weighted_clusters": {"clusters": [
            {"name": "a", "weight": 0}, {"name": "c", "weight": 100,
                                          "request_headers_to_add": [_add("x-w", "c")]}]}}},
        {"match": {"prefix": "/direct"}, "direct_response": {
            "status": 418, "body": {"inline_string": "short and stout"}},
         "response_headers_to_add": [_add("x-resp-route", "direct")]},
        {"match": {"prefix": "/to-https"}, "redirect": {"https_redirect": True}},
        {"match": {"prefix": "/to-host"}, "redirect": {"host_redirect": "elsewhere.test",
                                                       "response_code": "FOUND"}},
        {"match": {"prefix": "/to-path"}, "redirect": {"path_redirect": "/new/path",
                                                       "response_code": "SEE_OTHER"}},
        {"match": {"prefix": "/to-prefix/"}, "redirect": {
            "prefix_rewrite": "/landed/", "response_code": "TEMPORARY_REDIRECT",
            "strip_query": True}},
        {"match": {"prefix": "/to-regex"}, "redirect": {"regex_rewrite": {
            "pattern": {"regex": "^/to-regex/(\\w+)$"}, "substitution": "/r/\\1"},
            "response_code": "PERMANENT_REDIRECT"}},
        {"match": {"prefix": "/old/"}, "route": {"cluster": "b", "prefix_rewrite": "/new/"}},
        {"match": {"prefix": "/re/"}, "route": {"cluster": "b", "regex_rewrite": {
            "pattern": {"regex": "^/re/(\\w+)/(\\w+)$"}, "substitution": "/\\2/\\1"}}},
        {"match": {"prefix": "/host-rewrite"}, "route": {
            "cluster": "c", "host_rewrite_literal": "rewritten.test"}},
        {"match": {"prefix": "/mutate"}, "route": {"cluster": "a"},
         "request_headers_to_add": [
             _add("x-level", "route", "OVERWRITE_IF_EXISTS_OR_ADD"),
             _add("x-append", "route"),
             _add("x-if-absent", "route", "ADD_IF_ABSENT"),
             _add("x-client", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
             _add("x-local", "%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%"),
             _add("x-proto", "%PROTOCOL%"),
             _add("x-req", "%REQ(x-in)%")],
         "request_headers_to_remove": ["x-drop"],
         "response_headers_to_add": [_add("x-resp-route", "route")],
         "response_headers_to_remove": ["x-echo-extra"]},
        {"match": {"prefix": "/missing-cluster"}, "route": {"cluster": "nope"}},
        {"match": {"prefix": "/dead"}, "route": {"cluster": "dead"}},
        _to("a", prefix="/"),
    ]
    return {
        "name": "routes",
        "validate_clusters": False,
        "request_headers_to_add": [_add("x-level", "config", "OVERWRITE_IF_EXISTS_OR_ADD"),
                                   _add("x-append", "config")],
        "response_headers_to_add": [_add("x-resp-config", "config")],
        "internal_only_headers": ["x-internal-only"],
        "virtual_hosts": [
            {"name": "exact", "domains": ["exact.test"], "routes": [_to("b", prefix="/")]},
            {"name": "suffix", "domains": ["*.suffix.test"], "routes": [_to("c", prefix="/")]},
            {"name": "prefix", "domains": ["prefix.*"], "routes": [_to("b", prefix="/")],
             "response_headers_to_add": [_add("x-resp-vhost", "prefix")]},
            {"name": "default", "domains": ["*"], "routes": routes,
             "request_headers_to_add": [
                 _add("x-level", "vhost", "OVERWRITE_IF_EXISTS_OR_ADD"),
                 _add("x-append", "vhost")],
             "response_headers_to_add": [_add("x-resp-vhost", "vhost")]},
        ],
    }


def _listener(name: str, port: int, **hcm: Any) -> dict[str, Any]:
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1",
                                                         "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": {
                "@type": HCM, "stat_prefix": name, "route_config": route_config(),
                "http_filters": [ROUTER], **hcm}}]}]}


def _cluster(name: str, ports: list[int]) -> dict[str, Any]:
    return {"name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                             "port_value": p}}}}
                for p in ports]}]}}


class Pair:
    def __init__(self, backends: dict[str, EchoBackend]) -> None:
        self.envoy_ports = (free_port(), free_port())
        self.ours_ports = (free_port(), free_port())
        clusters = [_cluster(name, [b.port]) for name, b in backends.items()]
        clusters.append(_cluster("dead", [free_port()]))
        self.envoy = Envoy(self._bootstrap(self.envoy_ports, clusters), name="envoy-l7")
        self.ours = Pointsman(self._bootstrap(self.ours_ports, clusters), name="pointsman-l7")

    @staticmethod
    def _bootstrap(ports: tuple[int, int], clusters: list[dict[str, Any]]) -> dict[str, Any]:
        return {"static_resources": {
            "listeners": [_listener("plain", ports[0]),
                          _listener("edge", ports[1], use_remote_address=True)],
            "clusters": clusters}}

    def stop(self) -> None:
        self.envoy.stop()
        self.ours.stop()


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    backends = {name: EchoBackend(name).start() for name in ("a", "b", "c")}
    pair = Pair(backends)
    try:
        pair.envoy.wait_ready()
        pair.ours.wait_ready()
        yield pair
    finally:
        pair.stop()
        for backend in backends.values():
            backend.stop()


def _request(port: int, method: str, path: str, host: str,
             headers: list[tuple[str, str]]) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host)
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
        result: dict[str, Any] = {"status": response.status}
        for name in RESPONSE_HEADERS:
            values = response.headers.get_all(name)
            if values:
                result[f"response {name}"] = values
        if response.headers.get("x-backend"):
            seen = json.loads(body)
            result["backend"] = seen["backend"]
            result["upstream path"] = seen["path"]
            result["upstream authority"] = seen["authority"]
            result["upstream headers"] = sorted(
                (n, v) for n, v in seen["headers"] if n not in VOLATILE_UPSTREAM)
            result["upstream has x-request-id"] = any(n == "x-request-id"
                                                      for n, _ in seen["headers"])
        else:
            result["body"] = body.decode("latin-1")
        return result
    finally:
        connection.close()


CASES: list[tuple[str, str, str, list[tuple[str, str]]]] = [
    ("GET", "/exact", "default.test", []),
    ("GET", "/exact/", "default.test", []),
    ("GET", "/exact?x=1", "default.test", []),
    ("GET", "/items/42", "default.test", []),
    ("GET", "/items/42/x", "default.test", []),
    ("GET", "/sep", "default.test", []),
    ("GET", "/sep/deeper", "default.test", []),
    ("GET", "/separate", "default.test", []),
    ("GET", "/hdr", "default.test", [("x-v", "1")]),
    ("GET", "/hdr", "default.test", [("x-v", "prefixed")]),
    ("GET", "/hdr", "default.test", [("x-v", "r12")]),
    ("GET", "/hdr", "default.test", [("x-present", "")]),
    ("GET", "/hdr", "default.test", [("x-v", "other")]),
    ("GET", "/hdr", "default.test", [("x-v", "no")]),
    ("GET", "/q?v=1", "default.test", []),
    ("GET", "/q?v=2&flag", "default.test", []),
    ("GET", "/q?flag=", "default.test", []),
    ("GET", "/q?v=2", "default.test", []),
    ("POST", "/svc/Method", "default.test", [("content-type", "application/grpc")]),
    ("POST", "/svc/Method", "default.test", [("content-type", "application/json")]),
    ("GET", "/caseless/x", "default.test", []),
    ("GET", "/by-header", "default.test", [("x-cluster", "b")]),
    ("GET", "/by-header", "default.test", [("x-cluster", "unknown")]),
    ("GET", "/by-header", "default.test", []),
    ("GET", "/weighted", "default.test", []),
    ("GET", "/direct", "default.test", []),
    ("HEAD", "/direct", "default.test", []),
    ("GET", "/to-https/x?y=1", "default.test", []),
    ("GET", "/to-https/x", "default.test:8080", []),
    ("GET", "/to-host/x?y=1", "default.test", []),
    ("GET", "/to-path/x?y=1", "default.test", []),
    ("GET", "/to-prefix/a/b?y=1", "default.test", []),
    ("GET", "/to-regex/word", "default.test", []),
    ("GET", "/old/thing?q=1", "default.test", []),
    ("GET", "/re/one/two", "default.test", []),
    ("GET", "/host-rewrite", "default.test", []),
    ("GET", "/mutate", "default.test", [("x-drop", "1"), ("x-level", "client"),
                                        ("x-append", "client"), ("x-if-absent", "client"),
                                        ("x-in", "copied"),
                                        ("x-echo-header", "x-echo-extra=1")]),
    ("GET", "/mutate", "default.test", []),
    ("GET", "/missing-cluster", "default.test", []),
    ("GET", "/dead", "default.test", []),
    ("GET", "/", "exact.test", []),
    ("GET", "/", "EXACT.test", []),
    ("GET", "/", "a.suffix.test", []),
    ("GET", "/", "suffix.test", []),
    ("GET", "/", "prefix.anything", []),
    ("GET", "/", "default.test", [("x-forwarded-for", "203.0.113.9"),
                                  ("x-internal-only", "1"), ("x-envoy-retry-on", "5xx")]),
    ("GET", "/", "default.test", [("x-forwarded-proto", "https"),
                                  ("x-request-id", "fixed-id")]),
]


def _case_id(case: tuple[str, str, str, list[tuple[str, str]]]) -> str:
    method, path, host, headers = case
    return f"{method} {host}{path} {','.join(n for n, _ in headers)}"


@pytest.mark.parametrize("listener", [0, 1], ids=["plain", "use_remote_address"])
@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_same_routing_as_envoy(pair: Pair, listener: int,
                               case: tuple[str, str, str, list[tuple[str, str]]]) -> None:
    method, path, host, headers = case
    expected = _request(pair.envoy_ports[listener], method, path, host, headers)
    actual = _request(pair.ours_ports[listener], method, path, host, headers)
    assert actual == expected
