"""Differential: eight accepted fields whose effect no other test pinned, Envoy 1.40 vs ours.

One listener sets them all: the HCM's `skip_xff_append`, `preserve_external_request_id`,
`http_protocol_options.default_host_for_http_10` and `common_http_protocol_options.
max_headers_count`; the route configuration's `most_specific_header_mutations_wins`, a route's
`host_rewrite_header` and `cluster_not_found_response_code`, and a header's `keep_empty_value`.
Each test asserts what Envoy 1.40 was seen to do (so it fails when our side of the field is
switched off, not only when the two differ) and that we do the same.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from tests.support.bootstraps import ROUTER, static_cluster
from tests.support.differential import envoy_and_pointsman
from tests.support.http_backends import EchoBackend

pytestmark = pytest.mark.conformance

HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
       ".HttpConnectionManager")
MAX_HEADERS = 12


def _overwrite(key: str, value: str, **extra: Any) -> dict[str, Any]:
    return {"header": {"key": key, "value": value},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD", **extra}


def route_config() -> dict[str, Any]:
    routes = [
        {"match": {"prefix": "/rewrite"}, "route": {"cluster": "echo",
                                                     "host_rewrite_header": "x-target-host"}},
        {"match": {"prefix": "/by-header"}, "route": {
            "cluster_header": "x-cluster", "cluster_not_found_response_code": "NOT_FOUND"}},
        {"match": {"prefix": "/empty"}, "route": {"cluster": "echo"},
         "request_headers_to_add": [
             _overwrite("x-kept-empty", "%REQ(x-absent)%", keep_empty_value=True),
             _overwrite("x-dropped-empty", "%REQ(x-absent)%")]},
        {"match": {"prefix": "/"}, "route": {"cluster": "echo"},
         "request_headers_to_add": [_overwrite("x-level", "route")],
         "response_headers_to_add": [_overwrite("x-level", "route")]},
    ]
    return {
        "name": "routes",
        "validate_clusters": False,
        "most_specific_header_mutations_wins": True,
        "request_headers_to_add": [_overwrite("x-level", "config")],
        "response_headers_to_add": [_overwrite("x-level", "config")],
        "virtual_hosts": [
            {"name": "legacy", "domains": ["legacy.test"], "routes": [{
                "match": {"prefix": "/"}, "direct_response": {
                    "status": 200, "body": {"inline_string": "legacy host"}}}]},
            {"name": "default", "domains": ["*"], "routes": routes,
             "request_headers_to_add": [_overwrite("x-level", "vhost")],
             "response_headers_to_add": [_overwrite("x-level", "vhost")]},
        ],
    }


def bootstrap(port: int, backend: int) -> dict[str, Any]:
    hcm = {"@type": HCM, "stat_prefix": "fields", "route_config": route_config(),
           "http_filters": [ROUTER],
           "use_remote_address": True, "skip_xff_append": True,
           "preserve_external_request_id": True,
           "http_protocol_options": {"accept_http_10": True,
                                     "default_host_for_http_10": "legacy.test"},
           "common_http_protocol_options": {"max_headers_count": MAX_HEADERS}}
    return {"static_resources": {
        "listeners": [{"name": "fields", "address": {"socket_address": {
            "address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": hcm}]}]}],
        "clusters": [static_cluster("echo", [backend])]}}


@pytest.fixture(scope="module")
def ports() -> Iterator[tuple[int, int]]:
    """(envoy port, pointsman port), both serving bootstrap() to one echo backend."""
    with EchoBackend("echo") as backend, envoy_and_pointsman(
            lambda port: bootstrap(port, backend.port), "allow-listed") as both:
        yield both


def _get(port: int, path: str, headers: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Status, the x-level response header, body, and what the backend saw (if it answered)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", "app.test")
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
        result: dict[str, Any] = {"status": response.status,
                                  "x-level": response.headers.get_all("x-level")}
        if response.getheader("x-backend"):
            seen = json.loads(body)
            result["authority"] = seen["authority"]
            result["headers"] = {name: value for name, value in seen["headers"]}
        else:
            result["body"] = body.decode("latin-1")
        return result
    finally:
        connection.close()


def _both(ports: tuple[int, int], path: str, headers: Sequence[tuple[str, str]] = ()
          ) -> tuple[dict[str, Any], dict[str, Any]]:
    return _get(ports[0], path, headers), _get(ports[1], path, headers)


def test_skip_xff_append(ports: tuple[int, int]) -> None:
    # use_remote_address alone would append the peer: "203.0.113.9,<this host's address>".
    envoy, ours = _both(ports, "/", [("x-forwarded-for", "203.0.113.9")])
    assert envoy["headers"]["x-forwarded-for"] == "203.0.113.9"
    assert ours["headers"]["x-forwarded-for"] == envoy["headers"]["x-forwarded-for"]


def test_preserve_external_request_id(ports: tuple[int, int]) -> None:
    # An external client at the edge would otherwise get a fresh x-request-id.
    envoy, ours = _both(ports, "/", [("x-request-id", "client-chosen-id")])
    assert envoy["headers"]["x-request-id"] == "client-chosen-id"
    assert ours["headers"]["x-request-id"] == "client-chosen-id"


def test_host_rewrite_header(ports: tuple[int, int]) -> None:
    envoy, ours = _both(ports, "/rewrite", [("x-target-host", "rewritten.test")])
    assert envoy["authority"] == "rewritten.test"
    assert ours["authority"] == envoy["authority"]
    # Without the header the authority stays as sent.
    envoy, ours = _both(ports, "/rewrite")
    assert envoy["authority"] == ours["authority"] == "app.test"


def test_cluster_not_found_response_code(ports: tuple[int, int]) -> None:
    # The default would be 503.
    envoy, ours = _both(ports, "/by-header", [("x-cluster", "ghost")])
    assert envoy["status"] == 404
    assert ours["status"] == envoy["status"]
    envoy, ours = _both(ports, "/by-header", [("x-cluster", "echo")])
    assert envoy["status"] == ours["status"] == 200


def test_most_specific_header_mutations_wins(ports: tuple[int, int]) -> None:
    # Overwrites at route, virtual host and route configuration level: by default the least
    # specific (route configuration) is applied last and wins; with the flag the route does.
    envoy, ours = _both(ports, "/")
    assert (envoy["headers"]["x-level"], envoy["x-level"]) == ("route", ["route"])
    assert (ours["headers"]["x-level"], ours["x-level"]) == ("route", ["route"])


def test_keep_empty_value(ports: tuple[int, int]) -> None:
    envoy, ours = _both(ports, "/empty")
    assert envoy["headers"].get("x-kept-empty") == ""
    assert "x-dropped-empty" not in envoy["headers"]
    assert ours["headers"].get("x-kept-empty") == ""
    assert "x-dropped-empty" not in ours["headers"]


def _http10_without_host(port: int) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /anything HTTP/1.0\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_default_host_for_http_10(ports: tuple[int, int]) -> None:
    # An HTTP/1.0 request without Host takes the configured host, which routes it to the
    # `legacy.test` virtual host (without the field Envoy answers 400 "missing host").
    envoy = _http10_without_host(ports[0])
    assert envoy == (200, b"legacy host")
    assert _http10_without_host(ports[1]) == envoy


def _with_headers(port: int, count: int) -> int:
    """A GET whose head has `count` header fields in all (Host included)."""
    headers = [(f"x-filler-{index}", "1") for index in range(count - 1)]
    return int(_get(port, "/", headers)["status"])


def test_max_headers_count_http1(ports: tuple[int, int]) -> None:
    expected = [_with_headers(ports[0], count) for count in (MAX_HEADERS, MAX_HEADERS + 1)]
    assert expected == [200, 431]
    assert [_with_headers(ports[1], count) for count in (MAX_HEADERS, MAX_HEADERS + 1)] == \
        expected
