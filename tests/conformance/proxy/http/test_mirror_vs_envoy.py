"""Differential: request mirroring (RouteAction.request_mirror_policies), Envoy 1.40 vs ours.

The same requests through both proxies: what the main backend and the mirror backend receive
(method, path, authority, headers in order, body: the `-shadow` authority, host_rewrite_literal,
x-envoy-internal and x-forwarded-for of the async client, the route's mutations and timeout),
which requests are mirrored at all (cluster_header present, absent or unknown, a 0% fraction,
policies inherited from the virtual host and the route configuration, no healthy host for
the main request, a main request that cannot connect), a body larger than the buffer limit
streamed to the mirror, the mirror's answer ignored, and the mirror cluster's stats; with
tracing on, the mirror's trace context (a "mirror" child span, sampled as trace_sampled says
or as the request) and the mirror spans exported.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conformance.proxy.observability.wiring import require_sidecar_tracing
from tests.integration.proxy.observability.collector import FakeCollector
from tests.support.bootstraps import H2_OPTIONS, http_bootstrap, static_cluster
from tests.support.envoy import Envoy
from tests.support.http_backends import EchoBackend
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance

BIG = 3 * 1024 * 1024  # over the 1 MiB buffer limit: only a streaming shadow gets it all


def _mirror(**fields: Any) -> list[dict[str, Any]]:
    return [{"cluster": "mirror", **fields}]


def routes() -> list[dict[str, Any]]:
    def to(prefix: str, cluster: str = "main", **action: Any) -> dict[str, Any]:
        return {"match": {"prefix": prefix}, "route": {"cluster": cluster, **action}}

    return [
        {**to("/mutated", timeout="7s", request_mirror_policies=_mirror()),
         "request_headers_to_add": [{"header": {"key": "x-route", "value": "r1"}}]},
        to("/nosuffix", request_mirror_policies=_mirror(disable_shadow_host_suffix_append=True)),
        to("/literal", request_mirror_policies=_mirror(host_rewrite_literal="lit.test")),
        to("/by-header", request_mirror_policies=[{"cluster_header": "x-mirror-to"}]),
        to("/never", request_mirror_policies=_mirror(runtime_fraction={
            "default_value": {"numerator": 0}})),
        to("/per-try", request_mirror_policies=_mirror(),
           retry_policy={"retry_on": "5xx", "per_try_timeout": "2s"}),
        to("/failing-mirror", request_mirror_policies=[{"cluster": "failing"}]),
        to("/empty", "empty", request_mirror_policies=_mirror()),
        to("/dead", "dead", request_mirror_policies=_mirror()),
        to("/big", request_mirror_policies=_mirror()),
        to("/inherited"),  # the virtual host's policy
    ]


def bootstrap(port: int, backends: dict[str, int], dead_port: int) -> dict[str, Any]:
    config = http_bootstrap(port, routes(), [
        static_cluster("main", [backends["main"]]),
        static_cluster("mirror", [backends["mirror"]]),
        static_cluster("failing", [backends["failing"]]),
        static_cluster("dead", [dead_port]),
        {**static_cluster("empty", []), "load_assignment": {"cluster_name": "empty"}},
    ], stat_prefix="mirrors")
    route_config = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][
        0]["typed_config"]["route_config"]
    vhost = route_config["virtual_hosts"][0]
    vhost["domains"] = ["app.test", "app.test:8080", "[::1]:99"]
    vhost["request_mirror_policies"] = _mirror(host_rewrite_literal="from-vhost.test")
    route_config["request_mirror_policies"] = _mirror(host_rewrite_literal="from-config.test")
    route_config["virtual_hosts"].append({"name": "other", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": "main"}}]})
    return config


Request = tuple[str, str, str, tuple[tuple[str, str], ...], bytes]
REQUESTS: list[Request] = [
    ("POST", "/mutated?x=1", "app.test:8080", (), b"hello"),
    ("GET", "/mutated/xff", "app.test", (("x-forwarded-for", "10.1.1.1"),), b""),
    ("GET", "/nosuffix", "app.test", (), b""),
    ("PUT", "/literal", "app.test", (), b"put body"),
    ("GET", "/by-header", "[::1]:99", (("x-mirror-to", "mirror"),), b""),
    ("GET", "/by-header/absent", "app.test", (), b""),
    ("GET", "/by-header/unknown", "app.test", (("x-mirror-to", "nowhere"),), b""),
    ("GET", "/never", "app.test", (), b""),
    ("GET", "/per-try", "app.test", (), b""),
    ("GET", "/failing-mirror", "app.test", (), b""),
    ("GET", "/empty", "app.test", (), b""),
    ("GET", "/dead", "app.test", (), b""),
    ("POST", "/dead/with-body", "app.test", (), b"small body"),
    ("GET", "/inherited", "app.test", (), b""),
    ("GET", "/from-config", "other.test", (), b""),
    ("POST", "/big", "app.test", (), b"b" * BIG),
]
STATS = [f"cluster.{name}.{stat}" for name in ("mirror", "failing")
         for stat in ("upstream_rq_total", "upstream_rq_completed", "upstream_rq_200",
                      "upstream_rq_503")]


def _send(port: int, request: Request) -> tuple[int, int]:
    method, path, host, headers, body = request
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request(method, path, body=body or None,
                           headers={"Host": host, **dict(headers)})
        response = connection.getresponse()
        return response.status, len(response.read())
    finally:
        connection.close()


def _seen(backend: EchoBackend, path: str) -> list[tuple[Any, ...]]:
    """What `backend` received for `path`, the x-request-id left out (its value differs
    between proxies) and a large body reduced to its size."""
    return [(info["method"], info["authority"],
             tuple((name, value) for name, value in info["headers"] if name != "x-request-id"),
             info["body"] if len(info["body"]) < 1000 else len(info["body"]))
            for info in backend.seen if info["path"] == path]


def _same_request_id(main: EchoBackend, mirror: EchoBackend, path: str) -> bool | None:
    ids = [dict(info["headers"]).get("x-request-id")
           for backend in (main, mirror) for info in backend.seen if info["path"] == path]
    return None if len(ids) < 2 else len(set(ids)) == 1


def _run(kind: type[Envoy] | type[Pointsman]) -> dict[str, Any]:
    with EchoBackend("main") as main, EchoBackend("mirror") as mirror, \
            EchoBackend("failing", fail_status=503) as failing:
        port = free_port()
        proxy = kind(bootstrap(port, {"main": main.port, "mirror": mirror.port,
                                      "failing": failing.port}, free_port()),
                     name=f"{kind.__name__}-mirror")
        try:
            proxy.wait_ready()
            answers = [_send(port, request) for request in REQUESTS]
            expected = sum(1 for _ in REQUESTS) - 6  # absent/unknown/never/empty/failing/dead
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and len(mirror.seen) < expected:
                time.sleep(0.05)
            time.sleep(0.3)  # anything more would come now
            paths = [request[1] for request in REQUESTS]
            return {"answers": answers,
                    "main": {path: _seen(main, path) for path in paths},
                    "mirror": {path: _seen(mirror, path) for path in paths},
                    "ids": {path: _same_request_id(main, mirror, path) for path in paths},
                    "failing": len(failing.seen),
                    "stats": {name: proxy.stat(name) for name in STATS}}
        finally:
            proxy.stop()


@pytest.fixture(scope="module")
def observed() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    yield _run(Envoy), _run(Pointsman)


@pytest.mark.parametrize("index", range(len(REQUESTS)),
                         ids=[f"{method} {host}{path}" for method, path, host, _, _ in REQUESTS])
def test_mirrored_like_envoy(index: int,
                             observed: tuple[dict[str, Any], dict[str, Any]]) -> None:
    envoy, ours = observed
    path = REQUESTS[index][1]
    assert ours["answers"][index] == envoy["answers"][index]
    assert ours["main"][path] == envoy["main"][path]
    assert ours["mirror"][path] == envoy["mirror"][path]
    assert ours["ids"][path] == envoy["ids"][path]


def test_reference_behaviour(observed: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """What Envoy 1.40 does, so that a change on both sides cannot pass unseen."""
    envoy, _ours = observed
    method, authority, headers, body = envoy["mirror"]["/mutated?x=1"][0]
    assert (method, authority, body) == ("POST", "app.test-shadow:8080", "hello")
    assert headers[-2][0] == "x-envoy-internal" and headers[-1][0] == "x-forwarded-for"
    assert envoy["ids"]["/mutated?x=1"] is True
    assert envoy["mirror"]["/big"][0][3] == BIG
    assert envoy["mirror"]["/never"] == [] and envoy["mirror"]["/empty"] == []
    assert envoy["answers"][REQUESTS.index(("GET", "/failing-mirror", "app.test", (), b""))][0] \
        == 200


def test_mirror_cluster_stats_like_envoy(
        observed: tuple[dict[str, Any], dict[str, Any]]) -> None:
    envoy, ours = observed
    assert envoy["failing"] == 1 and ours["failing"] == 1
    assert ours["stats"] == envoy["stats"]


# --- the mirror's trace context ----------------------------------------------------------------

INCOMING_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACED_ROUTES = {"/inherit": {}, "/unsampled": {"trace_sampled": False},
                 "/sampled": {"trace_sampled": True}}


def traced_bootstrap(port: int, main: int, mirror: int, collector: int) -> dict[str, Any]:
    config = http_bootstrap(
        port, [{"match": {"prefix": path}, "route": {
            "cluster": "main", "request_mirror_policies": _mirror(**fields)}}
            for path, fields in TRACED_ROUTES.items()],
        [static_cluster("main", [main]), static_cluster("mirror", [mirror]),
         {**static_cluster("otel", [collector]),
          "typed_extension_protocol_options": H2_OPTIONS}],
        stat_prefix="traced", tracing={"provider": {
            "name": "envoy.tracers.opentelemetry", "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "service_name": "svc",
                "grpc_service": {"envoy_grpc": {"cluster_name": "otel"}, "timeout": "1s"}}}})
    return config


def _traced_run(kind: type[Envoy] | type[Pointsman]) -> dict[str, Any]:
    collector = FakeCollector()
    try:
        with EchoBackend("main") as main, EchoBackend("mirror") as mirror:
            port = free_port()
            config = traced_bootstrap(port, main.port, mirror.port, collector.port)
            if kind is Envoy:  # its OTel tracer flushes every 5 s unless told otherwise
                config["layered_runtime"] = {"layers": [{"name": "static", "static_layer": {
                    "tracing.opentelemetry.flush_interval_ms": 100}}]}
            proxy = kind(config, name=f"{kind.__name__}-mirror-trace")
            try:
                proxy.wait_ready()
                for path in TRACED_ROUTES:
                    for flag in ("01", "00"):
                        _send(port, ("GET", f"{path}/{flag}", "app.test", (
                            ("traceparent", f"00-{INCOMING_TRACE}-00f067aa0ba902b7-{flag}"),),
                            b""))
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and len(mirror.seen) < 6:
                    time.sleep(0.05)
                # Sampled: the three server spans (01) and the mirror spans of /inherit/01,
                # /sampled/01 and /sampled/00.
                spans = [span for _, span in collector.wait_for_spans(6)]
            finally:
                proxy.stop()
            return {"main": _contexts(main), "mirror": _contexts(mirror), "spans": spans}
    finally:
        collector.stop()


def _contexts(backend: EchoBackend) -> dict[str, tuple[str, str, str]]:
    """path -> (trace id, span id, flags) of the traceparent the backend received."""
    found = {}
    for info in backend.seen:
        _version, trace, span, flags = dict(info["headers"])["traceparent"].split("-")
        found[info["path"]] = (trace, span, flags)
    return found


def _shape(run: dict[str, Any]) -> dict[str, Any]:
    """What must agree: per request, whether the mirror's trace is the request's, its sampled
    flag and whether its span id is new; then the mirror spans exported, by request, with
    their kind and whether their parent is the request's span (what the main upstream got)."""
    mirrors, by_span = {}, {}
    for path, (trace, span, flags) in run["mirror"].items():
        main_trace, main_span, _ = run["main"][path]
        mirrors[path] = (trace == main_trace == INCOMING_TRACE, flags, span != main_span)
        by_span[span] = (path, main_span)
    exported = {}
    for span in run["spans"]:
        if span.name == "mirror" and span.span_id.hex() in by_span:
            path, parent = by_span[span.span_id.hex()]
            exported[path] = (span.kind, span.parent_span_id.hex() == parent)
    return {"mirrors": mirrors, "exported": exported}


def test_mirror_trace_context_like_envoy() -> None:
    require_sidecar_tracing(traced_bootstrap(0, 0, 0, 0)["static_resources"]["listeners"][0][
        "filter_chains"][0]["filters"][0]["typed_config"])
    envoy, ours = _shape(_traced_run(Envoy)), _shape(_traced_run(Pointsman))
    assert envoy["mirrors"] == {
        "/inherit/01": (True, "01", True), "/inherit/00": (True, "00", True),
        "/unsampled/01": (True, "00", True), "/unsampled/00": (True, "00", True),
        "/sampled/01": (True, "01", True), "/sampled/00": (True, "01", True)}
    client = (3, True)  # SPAN_KIND_CLIENT, child of the request's span
    assert envoy["exported"] == {"/inherit/01": client, "/sampled/01": client,
                                 "/sampled/00": client}
    assert ours == envoy
