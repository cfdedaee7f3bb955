"""gRPC test servers (grpcio, raw bytes, no generated code): service `test.Echo`.

  Unary(bytes) -> b"<name>:" + request
  Stream(stream bytes) -> each message + b"!" (bidirectional streaming)
  Fail(bytes) -> aborts with NOT_FOUND "nope"
  Slow(bytes) -> answers after 3 s (for deadlines)
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc

from tests.support.ports import free_port

SERVICE = "test.Echo"


class GrpcBackend:
    def __init__(self, name: str, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.name = name
        self.port = port or free_port()
        self.calls: Counter[str] = Counter()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(self._unary),
            "Stream": grpc.stream_stream_rpc_method_handler(self._stream),
            "Fail": grpc.unary_unary_rpc_method_handler(self._fail),
            "Slow": grpc.unary_unary_rpc_method_handler(self._slow),
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.server.add_insecure_port(f"{host}:{self.port}")

    def start(self) -> GrpcBackend:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=None).wait(5)

    def _unary(self, request: bytes, context: Any) -> bytes:
        self.calls["Unary"] += 1
        return self.name.encode() + b":" + request

    def _stream(self, requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        self.calls["Stream"] += 1
        for message in requests:
            yield message + b"!"

    def _fail(self, request: bytes, context: Any) -> bytes:
        self.calls["Fail"] += 1
        context.abort(grpc.StatusCode.NOT_FOUND, "nope")
        return b""

    def _slow(self, request: bytes, context: Any) -> bytes:
        self.calls["Slow"] += 1
        time.sleep(3)
        return b"late"
