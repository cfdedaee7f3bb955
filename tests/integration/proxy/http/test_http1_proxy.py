"""HTTP/1.1 through the HCM and router to HTTP/1.1 backends, over loopback."""

from __future__ import annotations

from tests.integration.proxy.http.clients import H1Client
from tests.integration.proxy.http.harness import Sidecar, hcm, simple_routes, static_cluster


async def test_get_is_proxied_with_envoy_headers(backends) -> None:  # type: ignore[no-untyped-def]
    backend = backends("a")
    routes = simple_routes({"match": {"prefix": "/"}, "route": {"cluster": "a"}})
    async with Sidecar(hcm(routes), [static_cluster("a", [backend.port])]) as sidecar, \
            H1Client(sidecar.port) as client:
        response = await client.request("GET", "/hello?x=1", host="svc.test")
        assert response.status == 200
        seen = response.json()
        assert (seen["backend"], seen["path"], seen["authority"]) == ("a", "/hello?x=1",
                                                                     "svc.test")
        assert response.upstream_header("x-forwarded-proto") == "http"
        assert len(response.upstream_header("x-request-id") or "") == 36
        assert response.upstream_header("x-envoy-expected-rq-timeout-ms") == "15000"
        assert response.header("server") == "envoy"
        assert response.header("x-envoy-upstream-service-time") is not None
        # keep-alive both ways: a second request on the same connections
        again = await client.request("POST", "/p", host="svc.test", body=b"payload")
        assert again.json()["body"] == "payload"
        assert sidecar.stats.counters["cluster.a.upstream_cx_total"].value == 1


async def test_rewrites_and_header_manipulation(backends) -> None:  # type: ignore[no-untyped-def]
    backend = backends("a")
    routes = {
        "name": "local",
        "request_headers_to_add": [{"header": {"key": "x-level", "value": "config"},
                                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
        "response_headers_to_add": [{"header": {"key": "x-resp", "value": "config"}}],
        "virtual_hosts": [{
            "name": "vh", "domains": ["*"],
            "request_headers_to_add": [
                {"header": {"key": "x-level", "value": "vhost"},
                 "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
                {"header": {"key": "x-client",
                            "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}}],
            "request_headers_to_remove": ["x-secret"],
            "routes": [{
                "match": {"prefix": "/old/"},
                "route": {"cluster": "a", "prefix_rewrite": "/new/",
                          "host_rewrite_literal": "rewritten.test"},
                "response_headers_to_remove": ["x-backend"],
            }, {
                "match": {"safe_regex": {"regex": "/re/([a-z]+)/(\\d+)"}},
                "route": {"cluster": "a", "regex_rewrite": {
                    "pattern": {"regex": "^/re/([a-z]+)/(\\d+)$"}, "substitution": "/\\2/\\1"}},
            }]}]}
    async with Sidecar(hcm(routes), [static_cluster("a", [backend.port])]) as sidecar, \
            H1Client(sidecar.port) as client:
        response = await client.request("GET", "/old/thing?q=2",
                                        headers=[("x-secret", "s"), ("x-level", "client")])
        seen = response.json()
        assert seen["path"] == "/new/thing?q=2"
        assert seen["authority"] == "rewritten.test"
        assert response.upstream_header("x-envoy-original-path") == "/old/thing?q=2"
        assert response.upstream_header("x-secret") is None
        assert response.upstream_header("x-level") == "config"  # least specific wins
        assert response.upstream_header("x-client") == "127.0.0.1"
        assert response.header("x-resp") == "config"
        assert response.header("x-backend") is None
        regex = await client.request("GET", "/re/abc/42")
        assert regex.json()["path"] == "/42/abc"


async def test_local_replies(backends) -> None:  # type: ignore[no-untyped-def]
    domains = ["known.test", "known.test:8080"]
    routes = {"name": "local", "validate_clusters": False, "virtual_hosts": [{
        "name": "vh", "domains": domains, "routes": [
        {"match": {"path": "/direct"}, "direct_response": {"status": 418,
                                                            "body": {"inline_string": "tea"}}},
        {"match": {"prefix": "/moved"}, "redirect": {"https_redirect": True,
                                                     "prefix_rewrite": "/new"}},
        {"match": {"prefix": "/nowhere"}, "route": {"cluster": "missing"}},
        {"match": {"prefix": "/dead"}, "route": {"cluster": "dead"}},
        {"match": {"prefix": "/empty"}, "route": {"cluster": "empty"}},
    ]}]}
    dead_port = backends("scratch").port
    clusters = [static_cluster("dead", [1]), {"name": "empty", "type": "STATIC",
                                              "connect_timeout": "1s"}]
    async with Sidecar(hcm(routes), clusters) as sidecar, H1Client(sidecar.port) as client:
        direct = await client.request("GET", "/direct", host="known.test")
        assert (direct.status, direct.body) == (418, b"tea")
        moved = await client.request("GET", "/moved/x?y=1", host="known.test:8080")
        assert moved.status == 301
        assert moved.header("location") == "https://known.test:8080/new/x?y=1"  # as Envoy
        assert (await client.request("GET", "/", host="other.test")).status == 404
        assert (await client.request("GET", "/nowhere", host="known.test")).status == 503
        dead = await client.request("GET", "/dead", host="known.test")
        assert dead.status == 503
        assert dead.body.startswith(b"upstream connect error")
        empty = await client.request("GET", "/empty", host="known.test")
        assert (empty.status, empty.body) == (503, b"no healthy upstream")
    assert dead_port


async def test_route_timeout_gives_504(backends) -> None:  # type: ignore[no-untyped-def]
    backend = backends("slow")
    routes = simple_routes({"match": {"prefix": "/"}, "route": {"cluster": "a",
                                                                "timeout": "0.3s"}})
    async with Sidecar(hcm(routes), [static_cluster("a", [backend.port])]) as sidecar, \
            H1Client(sidecar.port) as client:
        response = await client.request("GET", "/", headers=[("x-echo-delay", "3")])
        assert (response.status, response.body) == (504, b"upstream request timeout")


async def test_retries_move_to_a_healthy_host(backends) -> None:  # type: ignore[no-untyped-def]
    bad = backends("bad", fail_status=503)
    good = backends("good")
    routes = simple_routes({"match": {"prefix": "/"}, "route": {
        "cluster": "a", "retry_policy": {"retry_on": "5xx", "num_retries": 3,
                                         "retry_host_predicate": [
            {"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3"
                         ".PreviousHostsPredicate"}}]}}})
    clusters = [static_cluster("a", [bad.port, good.port])]
    async with Sidecar(hcm(routes), clusters) as sidecar, H1Client(sidecar.port) as client:
        statuses = [(await client.request("GET", f"/{i}")).status for i in range(6)]
        assert statuses == [200] * 6
        assert bad.total >= 1 and good.total == 6


def test_inline_routes_to_unknown_clusters_are_refused() -> None:
    import pytest

    from protos.errors import ConfigError

    routes = simple_routes({"match": {"prefix": "/"}, "route": {"cluster": "ghost"}})
    with pytest.raises(ConfigError, match="unknown cluster 'ghost'"):
        Sidecar(hcm(routes), [])


async def test_stream_idle_timeout_gives_504(backends) -> None:  # type: ignore[no-untyped-def]
    # The request is complete: Envoy's onIdleTimeout answers 504 (408 only while the request
    # is still arriving; tests/conformance/proxy/http/test_minimal_hcm_vs_envoy.py).
    backend = backends("slow")
    routes = simple_routes(
        {"match": {"prefix": "/route-idle"}, "route": {"cluster": "a", "idle_timeout": "0.2s"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "a"}})
    config = hcm(routes, stream_idle_timeout="0.3s")
    async with Sidecar(config, [static_cluster("a", [backend.port])]) as sidecar, \
            H1Client(sidecar.port) as client:
        idle = await client.request("GET", "/", headers=[("x-echo-delay", "3")])
        assert (idle.status, idle.body) == (504, b"stream timeout")
    async with Sidecar(config, [static_cluster("a", [backend.port])]) as sidecar, \
            H1Client(sidecar.port) as client:
        fine = await client.request("GET", "/", headers=[("x-echo-delay", "0.1")])
        assert fine.status == 200
        route_idle = await client.request("GET", "/route-idle",
                                          headers=[("x-echo-delay", "3")])
        assert route_idle.status == 504


async def test_max_requests_circuit_breaker_overflows_with_503(backends) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    backend = backends("a")
    routes = simple_routes({"match": {"prefix": "/"}, "route": {"cluster": "a"}})
    cluster = static_cluster("a", [backend.port], circuit_breakers={"thresholds": [
        {"priority": "DEFAULT", "max_requests": 1}]})
    async with Sidecar(hcm(routes), [cluster]) as sidecar, H1Client(sidecar.port) as first, \
            H1Client(sidecar.port) as second:
        slow = asyncio.create_task(first.request("GET", "/", headers=[("x-echo-delay", "0.5")]))
        await asyncio.sleep(0.2)
        refused = await second.request("GET", "/")
        assert (await slow).status == 200
    assert refused.status == 503
    assert refused.body.endswith(b"reset reason: overflow")
    assert sidecar.counter("cluster.a.upstream_rq_active_overflow") == 1


async def test_request_timeout_gives_408_for_a_slow_body(backends) -> None:  # type: ignore[no-untyped-def]
    from tests.integration.proxy.http.clients import raw_exchange

    backend = backends("a")
    routes = simple_routes({"match": {"prefix": "/"}, "route": {"cluster": "a"}})
    config = hcm(routes, request_timeout="0.3s")
    async with Sidecar(config, [static_cluster("a", [backend.port])]) as sidecar:
        # the body never completes: 10 bytes announced, 2 sent
        reply = await raw_exchange(sidecar.port, b"POST / HTTP/1.1\r\nHost: a\r\n"
                                   b"Content-Length: 10\r\n\r\nab", wait=5)
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert reply.endswith(b"request timeout")
