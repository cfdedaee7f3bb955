"""The demo's applications, each started by `pointsman run ... -- python -m examples.demo.apps
KIND ...`. They know nothing of the mesh except the one convention of docs/deploy.md: call a
Service by name through the sidecar's outbound address (`POINTSMAN_OUTBOUND_IP`, set by
`pointsman run`) on the Service's port, and forward the W3C trace context headers
(https://www.w3.org/TR/trace-context/) so one request is one trace.

- `web HOST PORT`: HTTP/1.1. Each GET calls `api` (HTTP/1.1 to its sidecar; the sidecars
  speak HTTP/2 between them and to api, its port is h2c) and `inventory` (gRPC,
  grpc.health.v1 Check), and answers `{"api": <which api answered>, "inventory": <status>}`.
- `api NAME HOST PORT`: h2c; answers JSON naming itself (`api-v1`, `api-v2`); web asks it
  to wait 5-25 ms (`x-echo-delay`), so latency shows (examples/demo/h2c.py).
- `inventory HOST PORT`: gRPC, grpc.health.v1 Health reporting SERVING.
- `vault HOST PORT CERT KEY`: HTTPS (it terminates TLS itself: the Gateway passes its
  connections through by SNI); answers JSON naming itself.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import random
import signal
import ssl
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from examples.demo.h2c import H2cJsonApp

PROPAGATED = ("traceparent", "tracestate", "x-request-id")
API_PORT, INVENTORY_PORT = 8080, 9090


def _until_sigterm() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()


class _Web(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    outbound = os.environ.get("POINTSMAN_OUTBOUND_IP", "127.0.0.1")
    local = threading.local()

    def do_GET(self) -> None:
        context = {name: value for name in PROPAGATED if (value := self.headers.get(name))}
        try:
            api = self._call_api(context)
            inventory = self._call_inventory(context)
        except (OSError, grpc.RpcError, ValueError) as error:
            self._reply(502, {"error": str(error)})
            return
        self._reply(200 if api.get("backend") else 502,
                    {"api": api.get("backend", ""), "inventory": inventory})

    def _call_api(self, context: dict[str, str]) -> dict[str, Any]:
        connection = http.client.HTTPConnection(self.outbound, API_PORT, timeout=5)
        try:  # the Service's name in Host: the sidecar routes by it (docs/deploy.md)
            connection.request("GET", self.path, headers={
                "host": "api", **context,  # the echo app waits this long: some latency to see
                "x-echo-delay": f"{random.uniform(0.005, 0.025):.3f}"})
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        return dict(json.loads(body)) if response.status == 200 else {}

    def _call_inventory(self, context: dict[str, str]) -> str:
        stub = getattr(self.local, "stub", None)
        if stub is None:  # one channel per thread, to the sidecar, with the Service as authority
            channel = grpc.insecure_channel(f"{self.outbound}:{INVENTORY_PORT}",
                                            options=[("grpc.default_authority", "inventory")])
            stub = self.local.stub = health_pb2_grpc.HealthStub(channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5,
                            metadata=tuple(context.items()))
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def web(host: str, port: int) -> None:
    server = ThreadingHTTPServer((host, port), _Web)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _until_sigterm()
    server.shutdown()


def api(name: str, host: str, port: int) -> None:
    stop = asyncio.Event()

    async def until_sigterm() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await H2cJsonApp(name).serve(host, port, stop)

    asyncio.run(until_sigterm())


def inventory(host: str, port: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    server.add_insecure_port(f"{host}:{port}")
    server.start()
    _until_sigterm()
    server.stop(grace=2).wait()


class _Vault(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        _Web._reply(self, 200, {"backend": "vault", "path": self.path})  # type: ignore[arg-type]

    def log_message(self, format: str, *args: Any) -> None:
        return None


def vault(host: str, port: int, cert: str, key: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer((host, port), _Vault, bind_and_activate=False)
    server.daemon_threads = True
    try:
        server.socket = context.wrap_socket(server.socket, server_side=True)
        server.server_bind()
        server.server_activate()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        _until_sigterm()
        server.shutdown()
    finally:
        server.server_close()


def main(argv: list[str]) -> int:
    kind, rest = argv[0], argv[1:]
    if kind == "web":
        web(rest[0], int(rest[1]))
    elif kind == "api":
        api(rest[0], rest[1], int(rest[2]))
    elif kind == "inventory":
        inventory(rest[0], int(rest[1]))
    elif kind == "vault":
        vault(rest[0], int(rest[1]), rest[2], rest[3])
    else:
        print(f"unknown app {kind!r}: web, api, inventory or vault", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
