"""HTTP filters inside the HCM: local_ratelimit, rbac, health_check and a Python filter."""

from __future__ import annotations

from proxy.http.filter import HttpFilter, HttpStream
from tests.integration.proxy.http.clients import H1Client
from tests.integration.proxy.http.harness import Sidecar, hcm, simple_routes, static_cluster

ROUTES = simple_routes({"match": {"prefix": "/"}, "route": {"cluster": "a"}})


def _filter(name: str, type_name: str, **config: object) -> dict[str, object]:
    return {"name": name, "typed_config": {"@type": f"type.googleapis.com/{type_name}",
                                           **config}}


async def test_local_ratelimit_answers_429_with_headers(backends) -> None:  # type: ignore[no-untyped-def]
    backend = backends("a")
    limit = _filter(
        "envoy.filters.http.local_ratelimit",
        "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        stat_prefix="rl",
        token_bucket={"max_tokens": 2, "tokens_per_fill": 2, "fill_interval": "60s"},
        filter_enabled={"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        filter_enforced={"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        response_headers_to_add=[{"header": {"key": "x-limited", "value": "yes"}}],
        enable_x_ratelimit_headers="DRAFT_VERSION_03")
    async with Sidecar(hcm(ROUTES, filters=[limit]), [static_cluster("a", [backend.port])]) \
            as sidecar, H1Client(sidecar.port) as client:
        statuses = [(await client.request("GET", "/")) for _ in range(3)]
    assert [r.status for r in statuses] == [200, 200, 429]
    limited = statuses[2]
    assert limited.body == b"local_rate_limited"
    assert limited.header("x-limited") == "yes"
    assert limited.header("x-ratelimit-limit") == "2"
    assert limited.header("x-ratelimit-remaining") == "0"
    assert sidecar.counter("rl.http_local_rate_limit.rate_limited") == 1


async def test_rbac_admin_only_from_admin_network(backends) -> None:  # type: ignore[no-untyped-def]
    # The seed article: "admin only from 10.10.1.0/24"; here the client is 127.0.0.1.
    backend = backends("a")
    rbac = _filter("envoy.filters.http.rbac", "envoy.extensions.filters.http.rbac.v3.RBAC",
                   rules={"action": "DENY", "policies": {"admin-only": {
                       "permissions": [{"header": {"name": ":authority",
                                                   "string_match": {"exact": "admin.test"}}}],
                       "principals": [{"not_id": {"direct_remote_ip": {
                           "address_prefix": "10.10.1.0", "prefix_len": 24}}}]}}})
    async with Sidecar(hcm(ROUTES, filters=[rbac]), [static_cluster("a", [backend.port])]) \
            as sidecar, H1Client(sidecar.port) as client:
        denied = await client.request("GET", "/", host="admin.test")
        allowed = await client.request("GET", "/", host="app.test")
    assert (denied.status, denied.body) == (403, b"RBAC: access denied")
    assert allowed.status == 200


async def test_health_check_modes(backends) -> None:  # type: ignore[no-untyped-def]
    backend = backends("a")
    matcher = [{"name": ":path", "string_match": {"exact": "/healthz"}}]
    local = _filter("envoy.filters.http.health_check",
                    "envoy.extensions.filters.http.health_check.v3.HealthCheck",
                    pass_through_mode=False, headers=matcher)
    passing = _filter("envoy.filters.http.health_check",
                      "envoy.extensions.filters.http.health_check.v3.HealthCheck",
                      pass_through_mode=True, headers=matcher)
    clusters = [static_cluster("a", [backend.port])]
    async with Sidecar(hcm(ROUTES, filters=[local]), clusters) as sidecar, \
            H1Client(sidecar.port) as client:
        assert (await client.request("GET", "/healthz")).status == 200
    assert backend.total == 0
    async with Sidecar(hcm(ROUTES, filters=[passing]), clusters) as sidecar, \
            H1Client(sidecar.port) as client:
        assert (await client.request("GET", "/healthz")).json()["backend"] == "a"
    assert backend.total == 1


async def test_python_filter_example(backends) -> None:  # type: ignore[no-untyped-def]
    backend = backends("a")
    python = {"name": "tag", "typed_config": {
        "@type": "type.googleapis.com/xds.type.v3.TypedStruct",
        "type_url": "type.googleapis.com/pointsman.filters.http.Python",
        "value": {"class": "examples.python_filter.filter:TagFilter",
                  "config": {"tag": "t1", "blocked_user_agents": ["badbot"]}}}}
    async with Sidecar(hcm(ROUTES, filters=[python]), [static_cluster("a", [backend.port])]) \
            as sidecar, H1Client(sidecar.port) as client:
        tagged = await client.request("GET", "/")
        blocked = await client.request("GET", "/", headers=[("user-agent", "BadBot")])
    assert tagged.upstream_header("x-request-tag") == "t1"
    assert tagged.header("x-python-filter-ms") is not None
    assert (blocked.status, blocked.body) == (403, b"blocked by the python filter")


class UpperBody(HttpFilter):
    """Upper-cases the request body and marks its end (a Python filter for the test below)."""

    def __init__(self, config: dict[str, object]) -> None:
        pass

    def on_request_headers(self, stream: HttpStream) -> None:
        stream.request.headers.remove("content-length")  # the body's length changes

    def on_request_data(self, stream: HttpStream, data: bytes, end_stream: bool) -> bytes:
        return data.upper() + (b"|end" if end_stream else b"")


async def test_on_request_data_rewrites_the_request_body(backends) -> None:  # type: ignore[no-untyped-def]
    backend = backends("a")
    python = {"name": "upper", "typed_config": {
        "@type": "type.googleapis.com/xds.type.v3.TypedStruct",
        "type_url": "type.googleapis.com/pointsman.filters.http.Python",
        "value": {"class": "tests.integration.proxy.http.test_filters_e2e:UpperBody",
                  "config": {}}}}
    async with Sidecar(hcm(ROUTES, filters=[python]), [static_cluster("a", [backend.port])]) \
            as sidecar, H1Client(sidecar.port) as client:
        chunked = await client.request("POST", "/", body=b"hello")
        bodiless = await client.request("GET", "/")
    assert chunked.json()["body"] == "HELLO|end"
    assert bodiless.json()["body"] == ""
