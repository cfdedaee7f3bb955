"""HTTP pieces for the observability tests: a recording backend and HCM bootstraps."""

from __future__ import annotations

import contextlib
import http.server
import threading
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from tests.integration.proxy.observability.collector import FakeCollector
from tests.support.ports import free_port
from tests.support.processes import ManagedProcess

HCM = ("type.googleapis.com/"
       "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager")
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
OTEL_TRACER = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig"
FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"


class RecordingBackend(http.server.ThreadingHTTPServer):
    """Answers 200 `NAME` and keeps every request's headers (lower-case names)."""

    daemon_threads = True

    def __init__(self, name: str, *, forward_to: str = "") -> None:
        self.name = name
        self.forward_to = forward_to  # "host:port": call it (as a service calling another)
        self.requests: list[dict[str, str]] = []
        super().__init__(("127.0.0.1", 0), _BackendHandler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _BackendHandler(http.server.BaseHTTPRequestHandler):
    server: RecordingBackend
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.requests.append(headers)
        body = self.server.name.encode()
        if self.server.forward_to:
            # A service that propagates the W3C context it received (what OTel SDKs do).
            outgoing = {k: v for k, v in headers.items() if k in ("traceparent", "tracestate")}
            request = urllib.request.Request(f"http://{self.server.forward_to}{self.path}",
                                             headers=outgoing)
            with urllib.request.urlopen(request, timeout=10) as response:
                body += b" -> " + response.read()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def cluster(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": port}}}}]}]}}


def hcm(cluster_name: str, *, tracing: dict[str, Any] | None = None,
        access_log: list[dict[str, Any]] | None = None,
        stat_prefix: str = "ingress") -> dict[str, Any]:
    config: dict[str, Any] = {
        "@type": HCM, "stat_prefix": stat_prefix,
        "route_config": {"name": "local", "virtual_hosts": [{
            "name": "all", "domains": ["*"],
            "routes": [{"name": "to_backend", "match": {"prefix": "/"},
                        "route": {"cluster": cluster_name}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
    }
    if tracing is not None:
        config["tracing"] = tracing
    if access_log is not None:
        config["access_log"] = access_log
    return config


def http_listener(name: str, port: int, hcm_config: dict[str, Any]) -> dict[str, Any]:
    return {"name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": hcm_config}]}]}


def opentelemetry_tracing(collector_cluster: str, service_name: str,
                          **extra: Any) -> dict[str, Any]:
    return {"provider": {"name": "envoy.tracers.opentelemetry", "typed_config": {
        "@type": OTEL_TRACER, "service_name": service_name,
        "grpc_service": {"envoy_grpc": {"cluster_name": collector_cluster}, "timeout": "1s"}}},
        **extra}


def grpc_cluster(name: str, port: int) -> dict[str, Any]:
    """A cluster for an OTLP/gRPC collector (HTTP/2 upstream, as Envoy needs for gRPC)."""
    return {**cluster(name, port), "typed_extension_protocol_options": {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}}}


def bootstrap(listeners: list[dict[str, Any]], clusters: list[dict[str, Any]],
              **extra: Any) -> dict[str, Any]:
    return {"node": {"id": "obs-test", "cluster": "obs"},
            "static_resources": {"listeners": listeners, "clusters": clusters}, **extra}


def get(url: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int,
                                                                                          str]:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read().decode()


ConfigFor = Callable[[int, int, int], dict[str, Any]]


@contextlib.contextmanager
def traced_proxy(start: Callable[[dict[str, Any]], ManagedProcess], config_for: ConfigFor
                 ) -> Iterator[tuple[int, RecordingBackend, FakeCollector]]:
    """One proxy (Envoy or ours: `start`) from config_for(listen port, backend port, collector
    port), between a RecordingBackend and a FakeCollector; yields (listen port, backend,
    collector) and stops all three on exit."""
    collector = FakeCollector()
    backend = RecordingBackend("backend")
    port = free_port()
    proxy = start(config_for(port, backend.port, collector.port))
    try:
        yield port, backend, collector
    finally:
        proxy.stop()
        backend.stop()
        collector.stop()
