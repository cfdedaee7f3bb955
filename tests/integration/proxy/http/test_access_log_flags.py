"""Envoy response flags in the access log for locally generated replies, and RDS routes."""

from __future__ import annotations

from pathlib import Path

from proxy.http.routing import select_virtual_host
from proxy.observability.hooks import disabled
from proxy.stats import Stats
from tests.integration.proxy.http.clients import H1Client
from tests.integration.proxy.http.harness import Sidecar, hcm, simple_routes, static_cluster
from tests.unit.proxy.http.routes import route_config


async def test_response_flags_in_access_log(tmp_path: Path, backends) -> None:  # type: ignore[no-untyped-def]
    backend = backends("a")
    log_path = tmp_path / "access.log"
    routes = {"name": "r", "validate_clusters": False, "virtual_hosts": [{
        "name": "vh", "domains": ["known.test"], "routes": [
            {"match": {"prefix": "/ok"}, "route": {"cluster": "a"}},
            {"match": {"prefix": "/slow"}, "route": {"cluster": "a", "timeout": "0.2s"}},
            {"match": {"prefix": "/empty"}, "route": {"cluster": "empty"}},
            {"match": {"prefix": "/dead"}, "route": {"cluster": "dead", "retry_policy": {
                "retry_on": "connect-failure", "num_retries": 1,
                "retry_back_off": {"base_interval": "0.01s"}}}},
            {"match": {"prefix": "/nc"}, "route": {"cluster": "nope"}}]}]}
    config = hcm(routes, access_log=[{"name": "envoy.access_loggers.file", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
        "path": str(log_path),
        "log_format": {"text_format_source": {"inline_string":
                       "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_CLUSTER%\n"}}}}])
    clusters = [static_cluster("a", [backend.port]), static_cluster("dead", [1]),
                {"name": "empty", "type": "STATIC", "connect_timeout": "1s"}]
    observability = disabled(Stats())
    try:
        async with Sidecar(config, clusters, observability=observability) as sidecar, \
                H1Client(sidecar.port) as client:
            for path, host in [("/ok", "known.test"), ("/x", "other.test"),
                               ("/empty", "known.test"), ("/dead", "known.test"),
                               ("/nc", "known.test")]:
                await client.request("GET", path, host=host)
            await client.request("GET", "/slow", host="known.test",
                                 headers=[("x-echo-delay", "2")])
        assert observability.flush(5)
    finally:
        observability.close()
    lines = log_path.read_text().splitlines()
    assert lines == [
        "/ok 200 - a",
        "/x 404 NR -",
        "/empty 503 UH empty",
        "/dead 503 URX,UF dead",  # as set: why no retry, then the failure (Envoy 1.40)
        "/nc 503 NC nope",
        "/slow 504 UT a",
    ]


async def test_rds_routes_come_from_the_route_provider(backends) -> None:  # type: ignore[no-untyped-def]
    backend = backends("a")
    config = hcm(None, rds={"route_config_name": "dynamic", "config_source": {"ads": {}}})
    async with Sidecar(config, [static_cluster("a", [backend.port])]) as sidecar, \
            H1Client(sidecar.port) as client:
        assert sidecar.config.rds_route_config_name == "dynamic"
        before = await client.request("GET", "/")
        assert before.status == 404  # no RouteConfiguration yet: NR, as Envoy
        sidecar.routes.configs["dynamic"] = route_config(simple_routes(
            {"match": {"prefix": "/"}, "route": {"cluster": "a"}}))
        after = await client.request("GET", "/")
        assert after.status == 200 and after.json()["backend"] == "a"
    assert select_virtual_host(sidecar.routes.configs["dynamic"], "x") is not None
