"""The conformance suite's echo server, as a process: `python -m
tests.conformance.gateway_api.echo --pod NAME --namespace NS --host IP [--http PORT]...
[--https PORT --cert FILE --key FILE [--client-ca FILE]] [--grpc PORT]...
[--grpc-echo PORT [--grpc-echo-tls PORT]] [--tcp-echo PORT [--tcp-echo-tls PORT]]`.

It answers as the suite's echo-basic does (its README and `conformance/utils/http` read it):
every HTTP request with 200 and a JSON body naming the request as the backend saw it -
`path`, `host`, `method`, `proto`, `headers` (name -> list of values, names as received),
`namespace`, `pod` - and with the response headers `X-Echo-Set-Header: name:value,...` asks
for, after waiting as `?delay=1s` asks, logging `Echoing back request made to PATH to client`
as echo-basic does. Under `/retry/` it plays echo-basic's retry simulation (RetrySimulation:
`uuid`, `succeedAfter`, `responseCode`, `delayRetry`); `/ws` is a WebSocket echo (echo-basic's
wsHandler: each message sent back). A gRPC call of any method (raw bytes,
no generated code: the mesh client only reads what the server reports) answers the same JSON,
`headers` being the call's metadata and `proto` "grpc". With `--grpc-echo PORT` it serves
echo-basic's GrpcEcho instead (grpcecho.py), as the gateway suite's grpc-infra-backend pods do
(and over TLS with `--grpc-echo-tls`, grpc-infra-backend-v1's TLS_SERVER_CERT).
Written for these tests, not copied: the upstream images are Go.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import h2.config
import h2.connection
import h2.events

from tests.conformance.gateway_api import grpcecho, websocket

ECHO_SET_HEADER = "X-Echo-Set-Header"  # echo-basic: headers the response should carry


def ready_line(namespace: str, pod: str) -> str:
    """What the echo prints once it serves: the runners wait for this line, not for the word
    "ready", which "Address already in use" contains."""
    return f"echo {namespace}/{pod} ready"


def report(pod: str, namespace: str, *, path: str, host: str, method: str, proto: str,
           headers: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The JSON body the echo server answers with."""
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name, []).append(value)
    return {"path": path, "host": host, "method": method, "proto": proto,
            "headers": grouped, "namespace": namespace, "pod": pod}


def echo_set_headers(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """`X-Echo-Set-Header: a:1,b:2` -> [("a", "1"), ("b", "2")]."""
    out = []
    for name, value in headers:
        if name.lower() != ECHO_SET_HEADER.lower():
            continue
        for item in value.split(","):
            key, sep, text = item.partition(":")
            if sep and key.strip():
                out.append((key.strip(), text.strip()))
    return out


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)$")


def query_delay(path: str, name: str = "delay") -> float:
    """echo-basic's `?delay=` (a Go duration: `1s`, `300ms`, `1m`): how long to wait before
    answering, in seconds; 0 when absent or unreadable (the suite's timeout tests send it).
    The retry simulation reads `delayRetry` alike."""
    for value in parse_qs(urlsplit(path).query).get(name, ()):
        found = _DURATION.match(value)
        if found:
            return float(found[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0}[found[2]]
    return 0.0


RETRY_PREFIX = "/retry/"  # echo-basic routes these to its retry simulation


@dataclass(frozen=True)
class Fail:
    """One failed attempt: answer `code` with no body, or reset the connection when None;
    after `delay` seconds."""

    code: int | None
    delay: float


@dataclass(frozen=True)
class Refuse:
    """A request the simulation cannot play: 400 with `text`."""

    text: str


class RetrySimulation:
    """echo-basic's retrySimulationHandler, without sockets: attempts are counted per `uuid`
    query parameter; while fewer than `succeedAfter` were made, the attempt fails (with the
    status `responseCode` when it is an integer, else a TCP reset), after `delayRetry` (a Go
    duration); from then on the request is echoed. Returns None for an echo."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attempts: dict[str, int] = {}

    def attempt(self, path: str) -> Fail | Refuse | None:
        query = parse_qs(urlsplit(path).query)
        uuid = (query.get("uuid") or [""])[0]
        if not uuid:
            return Refuse("uuid is required")
        try:
            succeed_after = int((query.get("succeedAfter") or [""])[0])
        except ValueError:
            return Refuse("succeedAfter is required")
        try:
            code: int | None = int((query.get("responseCode") or [""])[0])
        except ValueError:
            code = None  # the default failure: the connection reset
        with self._lock:
            made = self._attempts.get(uuid, 0)
            if made >= succeed_after:
                return None
            self._attempts[uuid] = made + 1
        return Fail(code, query_delay(path, "delayRetry"))


WEBSOCKET_PATH = "/ws"  # echo-basic's WebSocket echo


def websocket_answer(frame: websocket.Frame) -> websocket.Frame | None:
    """What the echo sends back for a client's frame: the data frame itself (io.Copy of the
    connection), a pong for a ping, the close echoed (RFC 6455 5.5.1)."""
    if frame.opcode == websocket.PING:
        return websocket.Frame(websocket.PONG, frame.payload)
    if frame.opcode == websocket.PONG:
        return None
    return frame


def http_handler(pod: str, namespace: str) -> type[BaseHTTPRequestHandler]:
    retries = RetrySimulation()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK wait

        def _answer(self) -> None:
            if urlsplit(self.path).path == WEBSOCKET_PATH:
                self._websocket()
                return
            if urlsplit(self.path).path.startswith(RETRY_PREFIX):
                outcome = retries.attempt(self.path)
                if outcome is not None:
                    self._fail(outcome)
                    return
            self._echo()

        def _fail(self, outcome: Fail | Refuse) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            if isinstance(outcome, Refuse):
                self._plain(400, outcome.text.encode())
                return
            # not in echo-basic: which attempt failed how, for a reader of the logs
            print(f"Failing attempt made to {self.path}: "
                  f"{outcome.code or 'connection reset'}", flush=True)
            if outcome.delay:
                time.sleep(outcome.delay)
            if outcome.code is not None:
                self._plain(outcome.code, b"")
                return
            # echo-basic hijacks the connection and closes it with SO_LINGER 0: an RST
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            self.rfile.close()
            self.wfile.close()
            self.connection.close()

        def _websocket(self) -> None:
            """x/net/websocket's server: the handshake (400 when the request is not one),
            then every data frame sent back as it came, a ping answered, until a close."""
            key = self.headers.get("Sec-WebSocket-Key", "")
            if self.headers.get("Upgrade", "").lower() != "websocket" or not key or \
                    self.headers.get("Sec-WebSocket-Version") != "13":
                self._plain(400, b"Bad Request")
                return
            self.send_response(101, "Switching Protocols")
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", websocket.accept_value(key))
            self.end_headers()
            self.close_connection = True
            print(f"established websocket connection {self.client_address[0]}", flush=True)
            reader = websocket.FrameReader(expect_masked=True)
            while data := self.rfile.read1(65536):
                for frame in reader.feed(data):
                    answer = websocket_answer(frame)
                    if answer is not None:
                        self.wfile.write(websocket.encode(answer))
                    if frame.opcode == websocket.CLOSE:
                        return

        def _plain(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _echo(self) -> None:
            delay = query_delay(self.path)
            if delay:
                time.sleep(delay)
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            headers = list(self.headers.items())
            seen = report(pod, namespace, path=self.path, host=self.headers.get("Host", ""),
                          method=self.command, proto=self.request_version, headers=headers)
            if isinstance(self.connection, ssl.SSLSocket):  # echo-basic's TLSAssertions
                seen["tls"] = tls_assertions(self.connection)
            body = json.dumps(seen).encode()
            # echo-basic's log line per request, which the mirror tests look for
            # (http.GetMirrorLogRegexp)
            print(f"Echoing back request made to {self.path} to client "
                  f"({self.client_address[0]})", flush=True)
            self.send_response(200)
            for name, value in echo_set_headers(headers):
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _answer

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


TCP_WELCOME = b"Gateway API Test TCP Server\n"  # echo-basic tcpserver.WelcomeMessage


def tcp_answer(line: bytes, assertions: dict[str, Any]) -> bytes | None:
    """echo-basic's TCP echo loop: TEST -> the assertions as JSON, IS_TLS -> true/false,
    PING -> PONG; anything else gets no answer."""
    command = line.strip()
    if command == b"TEST":
        return json.dumps(assertions).encode() + b"\n"
    if command == b"IS_TLS":
        return b"true\n" if assertions["isTLS"] else b"false\n"
    if command == b"PING":
        return b"PONG\n"
    return None


def tls_assertions(sock: Any) -> dict[str, Any]:
    """What echo-basic reports of a TLS connection (its TLSAssertions): the version, the SNI
    the client sent (kept by _remember_sni), the ALPN protocol, the cipher suite and the
    client's certificate as PEM when it presented one (`peerCertificates`, omitted when
    empty; with --client-ca only, VerifyClientCertIfGiven)."""
    found: dict[str, Any] = {
        "version": sock.version() or "", "serverName": getattr(sock, "sni", "") or "",
        "negotiatedProtocol": sock.selected_alpn_protocol() or "",
        "cipherSuite": (sock.cipher() or ("",))[0]}
    peer = sock.getpeercert(binary_form=True)
    if peer:
        found["peerCertificates"] = [ssl.DER_cert_to_PEM_cert(peer)]
    return found


def tcp_handler(pod: str, namespace: str, port: int, tls_port: int
                ) -> type[socketserver.StreamRequestHandler]:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            assertions: dict[str, Any] = {"namespace": namespace, "ingress": "", "service": "",
                                          "pod": pod, "tcpport": str(port),
                                          "isTLS": isinstance(self.connection, ssl.SSLSocket)}
            if tls_port:
                assertions["tlsport"] = str(tls_port)
            if assertions["isTLS"]:
                assertions["tls"] = tls_assertions(self.connection)
            self.wfile.write(TCP_WELCOME)
            for line in self.rfile:
                answer = tcp_answer(line, assertions)
                if answer is not None:
                    self.wfile.write(answer)
    return Handler


def h2c_handler(pod: str, namespace: str) -> type[socketserver.BaseRequestHandler]:
    """HTTP/2 by prior knowledge (echo-basic's h2c port): each request answered with the
    same JSON report, `proto` HTTP/2.0, through the h2 library's connection state machine."""
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            connection = h2.connection.H2Connection(
                h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
            connection.initiate_connection()
            self.request.sendall(connection.data_to_send())
            heads: dict[int, list[tuple[str, str]]] = {}
            while data := self.request.recv(65536):
                for event in connection.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        heads[event.stream_id] = list(event.headers)
                    elif isinstance(event, h2.events.StreamEnded):
                        self._answer(connection, event.stream_id, heads.pop(event.stream_id, []))
                self.request.sendall(connection.data_to_send())

        def _answer(self, connection: Any, stream: int, headers: list[tuple[str, str]]) -> None:
            pseudo = dict(item for item in headers if item[0].startswith(":"))
            plain = [item for item in headers if not item[0].startswith(":")]
            body = json.dumps(report(
                pod, namespace, path=pseudo.get(":path", ""), host=pseudo.get(":authority", ""),
                method=pseudo.get(":method", ""), proto="HTTP/2.0", headers=plain)).encode()
            connection.send_headers(stream, [(":status", "200"),
                                             ("content-type", "application/json"),
                                             ("content-length", str(len(body)))])
            connection.send_data(stream, body, end_stream=True)
    return Handler


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _remember_sni(sock: Any, name: str | None, _context: ssl.SSLContext) -> None:
    sock.sni = name or ""  # the TLS assertions report the SNI the client sent


class _AnyMethod(grpc.GenericRpcHandler):
    """Every unary method answers the report (echo-advanced's Echo method reports alike)."""

    def __init__(self, pod: str, namespace: str) -> None:
        self.pod, self.namespace = pod, namespace

    def service(self, details: Any) -> grpc.RpcMethodHandler:
        method = details.method

        def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
            metadata = [(key, value) for key, value in context.invocation_metadata()
                        if isinstance(value, str)]
            authority = next((value for key, value in metadata if key == ":authority"), "")
            return json.dumps(report(self.pod, self.namespace, path=method, host=authority,
                                     method="POST", proto="grpc", headers=metadata)).encode()
        return grpc.unary_unary_rpc_method_handler(unary)


class _GrpcEcho(grpc.GenericRpcHandler):
    """echo-basic's GrpcEcho (grpcecho.py): Echo and EchoTwo answer an EchoResponse naming the
    method, the metadata and the pod; EchoThree and any other method are UNIMPLEMENTED."""

    def __init__(self, pod: str, namespace: str) -> None:
        self.pod, self.namespace = pod, namespace

    def service(self, details: Any) -> grpc.RpcMethodHandler | None:
        method = details.method
        if method not in {grpcecho.full_method(name) for name in grpcecho.METHODS
                          if name != grpcecho.UNIMPLEMENTED_METHOD}:
            return None  # grpc answers UNIMPLEMENTED

        def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
            metadata = [(key, value) for key, value in context.invocation_metadata()
                        if isinstance(value, str)]
            return grpcecho.echo_response(method, metadata, self.namespace, self.pod)
        return grpc.unary_unary_rpc_method_handler(unary)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="echo", description=__doc__)
    parser.add_argument("--pod", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http", type=int, action="append", default=[])
    parser.add_argument("--grpc", type=int, action="append", default=[])
    parser.add_argument("--https", type=int, action="append", default=[],
                        help="answer HTTP over TLS here (echo-basic's HTTPS_PORT, 8443)")
    parser.add_argument("--cert", help="--https: the server certificate (PEM file)")
    parser.add_argument("--key", help="--https: its private key (PEM file)")
    parser.add_argument("--client-ca", help="--https: verify a client certificate when one is "
                                            "given, against these CAs (TLS_CLIENT_CACERTS)")
    parser.add_argument("--h2c", type=int, action="append", default=[],
                        help="answer HTTP/2 by prior knowledge here (echo-basic's h2c port)")
    parser.add_argument("--tcp-echo", type=int, default=0,
                        help="echo-basic's TCP echo server (TCP_ECHO_SERVER) on this port")
    parser.add_argument("--tcp-echo-tls", type=int, default=0,
                        help="... and over TLS on this port (--cert, --key)")
    parser.add_argument("--grpc-echo", type=int, action="append", default=[],
                        help="serve echo-basic's GrpcEcho service (the gateway suite's) here")
    parser.add_argument("--grpc-echo-tls", type=int, default=0,
                        help="... and over TLS on this port (--cert, --key), as echo-basic "
                             "serves it on HTTPS_PORT with TLS_SERVER_CERT")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    servers: list[socketserver.BaseServer] = [
        ThreadingHTTPServer((args.host, port), http_handler(args.pod, args.namespace))
        for port in args.http]
    if args.https:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        context.sni_callback = _remember_sni
        if args.client_ca:  # echo-basic: tls.VerifyClientCertIfGiven
            context.load_verify_locations(args.client_ca)
            context.verify_mode = ssl.CERT_OPTIONAL
        for port in args.https:
            server = ThreadingHTTPServer((args.host, port), http_handler(args.pod, args.namespace))
            server.socket = context.wrap_socket(server.socket, server_side=True)
            servers.append(server)
    tcp_servers: list[socketserver.BaseServer] = [
        _TCPServer((args.host, port), h2c_handler(args.pod, args.namespace))
        for port in args.h2c]
    if args.tcp_echo:
        handler = tcp_handler(args.pod, args.namespace, args.tcp_echo, args.tcp_echo_tls)
        tcp_servers.append(_TCPServer((args.host, args.tcp_echo), handler))
        if args.tcp_echo_tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(args.cert, args.key)
            context.sni_callback = _remember_sni
            tls_server = _TCPServer((args.host, args.tcp_echo_tls), handler)
            tls_server.socket = context.wrap_socket(tls_server.socket, server_side=True)
            tcp_servers.append(tls_server)
    servers += tcp_servers
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in servers]
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    grpc_server.add_generic_rpc_handlers((_AnyMethod(args.pod, args.namespace),))
    for port in args.grpc:
        grpc_server.add_insecure_port(f"{args.host}:{port}")
    echo_server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    echo_server.add_generic_rpc_handlers((_GrpcEcho(args.pod, args.namespace),))
    for port in args.grpc_echo:
        echo_server.add_insecure_port(f"{args.host}:{port}")
    if args.grpc_echo_tls:
        with open(args.key, "rb") as key, open(args.cert, "rb") as cert:
            credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
        echo_server.add_secure_port(f"{args.host}:{args.grpc_echo_tls}", credentials)
    try:
        for thread in threads:
            thread.start()
        grpc_server.start()
        echo_server.start()
        print(ready_line(args.namespace, args.pod), flush=True)
        stop.wait()
    finally:
        grpc_server.stop(grace=None)
        echo_server.stop(grace=None)
        for server in servers:
            server.shutdown()
            server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
