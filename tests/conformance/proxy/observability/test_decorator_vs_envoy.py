"""Differential: a route's decorator with tracing on (Envoy ingress). The operation names the
SERVER span and, with `propagate` (default true), comes back in x-envoy-decorator-operation;
an incoming x-envoy-decorator-operation renames the span and is not forwarded."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from tests.conformance.proxy.observability.http_support import (
    ConfigFor,
    bootstrap,
    cluster,
    grpc_cluster,
    hcm,
    http_listener,
    opentelemetry_tracing,
    traced_proxy,
)
from tests.conformance.proxy.observability.test_tracing_vs_envoy import start_envoy, start_sidecar
from tests.support.processes import ManagedProcess

pytestmark = pytest.mark.conformance

REQUESTS = (("/a", {}), ("/b", {}), ("/c", {}), ("/c", {"x-envoy-decorator-operation": "client"}))


def _config(port: int, backend: int, collector: int) -> dict[str, Any]:
    manager = hcm("backend", tracing=opentelemetry_tracing("otel", "svc"))
    manager["route_config"]["virtual_hosts"][0]["routes"] = [
        {"match": {"prefix": "/a"}, "route": {"cluster": "backend"},
         "decorator": {"operation": "op-a"}},
        {"match": {"prefix": "/b"}, "route": {"cluster": "backend"},
         "decorator": {"operation": "op-b", "propagate": False}},
        {"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]
    return bootstrap([http_listener("ingress", port, manager)],
                     [cluster("backend", backend), grpc_cluster("otel", collector)])


def observe_decorators(start: Callable[[dict[str, Any]], ManagedProcess], config_for: ConfigFor,
                       requests: tuple[tuple[str, dict[str, str]], ...]
                       ) -> tuple[list[Any], list[str]]:
    """Per request: the path, the x-envoy-decorator-operation the client and the backend saw;
    then the sorted names of the exported spans."""
    with traced_proxy(start, config_for) as (port, backend, collector):
        seen = []
        for path, headers in requests:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
            with urllib.request.urlopen(request, timeout=10) as response:
                seen.append((path, response.headers.get("x-envoy-decorator-operation"),
                             backend.requests[-1].get("x-envoy-decorator-operation")))
        names = sorted(span.name for _, span in collector.wait_for_spans(len(requests)))
    return seen, names


def test_decorator_names_the_span_and_propagates_like_envoy() -> None:
    envoy = observe_decorators(start_envoy, _config, REQUESTS)
    assert envoy == ([("/a", "op-a", None), ("/b", None, None), ("/c", None, None),
                      ("/c", None, None)], ["client", "ingress", "op-a", "op-b"])
    assert observe_decorators(start_sidecar, _config, REQUESTS) == envoy
