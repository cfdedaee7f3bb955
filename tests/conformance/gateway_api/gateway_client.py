"""The gateway client: requests sent to a Gateway as the conformance suite's roundtripper
(conformance/utils/roundtripper) and gRPC client (conformance/utils/grpc) send them, and what
they capture. HTTP/1.1 with the case's Host, no redirect followed; HTTPS with SNI (the case's
server name, else its host) trusting a Secret's certificate, the name checked with Go's rules;
HTTP/2 by prior knowledge or over TLS (ALPN h2) on the h2 library's state machine; gRPC calls of
echo-basic's GrpcEcho with metadata and authority. gateway_runner.py drives it.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import h2.exceptions

from tests.conformance.gateway_api import grpcecho, websocket
from tests.conformance.gateway_api.expectations import Captured, ExpectedResponse
from tests.conformance.gateway_api.gateway_certs import certificate_names, go_hostname_match
from tests.conformance.gateway_api.gateway_steps import GRPCCase


def split_address(address: str) -> tuple[str, int | None]:
    host, sep, port = address.rpartition(":")
    if sep and port.isdigit():
        return host, int(port)
    return address, None


# a client certificate to present: its certificate chain and key, as PEM files
ClientCertificate = tuple[str, str]


def tls_context(trust: bytes, client: ClientCertificate | None = None) -> ssl.SSLContext:
    """Trusts the Secret's certificate; the name is checked with Go's rules (go_hostname_match)
    after the handshake, OpenSSL refusing wildcards such as `*.org` that Go takes. `client`:
    the certificate presented when the server asks for one (GetClientCertificateHook)."""
    context = ssl.create_default_context(cadata=trust.decode() if trust else None)
    if client is not None:
        context.load_cert_chain(*client)
    # Go's RootCAs takes a leaf as an anchor (AppendCertsFromPEM of the server's certificate)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class _SNIConnection(http.client.HTTPSConnection):
    """An HTTPS connection to an address whose SNI (and verified name) is another name."""

    def __init__(self, host: str, port: int, server_name: str, trust: bytes,
                 client: ClientCertificate | None = None) -> None:
        super().__init__(host, port, timeout=10, context=tls_context(trust, client))
        self.server_name = server_name
        self.trust = trust

    def connect(self) -> None:
        raw = socket.create_connection((self.host, self.port), self.timeout)
        try:
            self.sock = self._context.wrap_socket(  # type: ignore[attr-defined]
                raw, server_hostname=self.server_name)
        except BaseException:
            raw.close()
            raise
        der = self.sock.getpeercert(binary_form=True)
        pem = ssl.DER_cert_to_PEM_cert(der).encode() if der else b""
        if not any(go_hostname_match(name, self.server_name)
                   for name in certificate_names(pem)):
            self.sock.close()
            raise ssl.SSLCertVerificationError(
                f"certificate is not valid for {self.server_name}")


def _open(scheme: str, address: str, case: ExpectedResponse, trust: bytes,
          client: ClientCertificate | None = None) -> http.client.HTTPConnection:
    host, port = split_address(address)
    if scheme == "https":
        server_name = split_address(case.server_name or case.request.host or host)[0]
        return _SNIConnection(host, port or 443, server_name, trust, client)
    return http.client.HTTPConnection(host, port or 80, timeout=10)


def capture(scheme: str, address: str, case: ExpectedResponse, trust: bytes = b"",
            client: ClientCertificate | None = None) -> Captured | str:
    """One request as the roundtripper makes it: Host is the case's host (else the address),
    no redirect followed; what the echo backend reported, or why there is no answer. `client`:
    the certificate presented over TLS."""
    if case.request.protocol in ("H2C_PRIOR_KNOWLEDGE", "H2"):
        try:
            return _h2_exchange(scheme, address, case, trust, client)
        except (OSError, h2.exceptions.ProtocolError) as error:
            return f"request failed: {error!r}"
    connection = _open(scheme, address, case, trust, client)
    try:
        return _exchange(connection, address, case)
    except (OSError, http.client.HTTPException) as error:
        return f"request failed: {error!r}"
    finally:
        connection.close()


def _exchange(connection: http.client.HTTPConnection, address: str, case: ExpectedResponse
              ) -> Captured:
    request = case.request
    headers = {"Host": request.host or address, **request.headers}
    if case.backend_set_response_headers:
        headers["X-Echo-Set-Header"] = ",".join(
            f"{name}:{value}" for name, value in case.backend_set_response_headers.items())
    connection.request(request.method or "GET", request.path or "/", headers=headers)
    response = connection.getresponse()
    body = response.read()
    answered: dict[str, list[str]] = {}
    for name, value in response.getheaders():
        answered.setdefault(name, []).append(value)
    # roundtripper.go: the echo backend's report when the answer is JSON; otherwise the
    # request "assume[d] it made the right request" (only its method known), e.g. a CORS
    # preflight the Gateway answers itself
    seen: Any = {"method": request.method or "GET"}
    if response.getheader("Content-Type") == "application/json":
        try:
            seen = json.loads(body)
        except ValueError:
            seen = {}
    if not isinstance(seen, dict):
        seen = {}
    return Captured(status=response.status, host=seen.get("host", ""),
                    path=seen.get("path", ""), method=seen.get("method", ""),
                    namespace=seen.get("namespace", ""), pod=seen.get("pod", ""),
                    request_headers=seen.get("headers", {}), response_headers=answered,
                    protocol=seen.get("proto", ""), location=response.getheader("Location", ""),
                    sni=_tls_of(seen).get("serverName", ""),
                    peer_certificates=tuple(_tls_of(seen).get("peerCertificates") or ()))


def _tls_of(seen: dict[str, Any]) -> dict[str, Any]:
    """The backend's report of the TLS it terminated (echo-basic's `tls`), or {}."""
    found = seen.get("tls")
    return found if isinstance(found, dict) else {}


def _h2_socket(scheme: str, address: str, case: ExpectedResponse, trust: bytes,
               client: ClientCertificate | None = None) -> socket.socket:
    """Plain TCP (h2c by prior knowledge), or TLS with ALPN h2 and SNI the case's server name
    (else its host), the name checked with Go's rules."""
    host, port = split_address(address)
    raw = socket.create_connection((host, port or (443 if scheme == "https" else 80)),
                                   timeout=10)
    if scheme != "https":
        return raw
    server_name = split_address(case.server_name or case.request.host or host)[0]
    context = tls_context(trust, client)
    context.set_alpn_protocols(["h2"])
    try:
        tls = context.wrap_socket(raw, server_hostname=server_name)
    except BaseException:
        raw.close()
        raise
    der = tls.getpeercert(binary_form=True)
    pem = ssl.DER_cert_to_PEM_cert(der).encode() if der else b""
    if tls.selected_alpn_protocol() != "h2" or not any(
            go_hostname_match(name, server_name) for name in certificate_names(pem)):
        tls.close()
        raise ssl.SSLError(f"no h2 or a certificate not valid for {server_name}")
    return tls


def _h2_exchange(scheme: str, address: str, case: ExpectedResponse, trust: bytes,
                 client: ClientCertificate | None = None) -> Captured:
    """The roundtripper's H2C_PRIOR_KNOWLEDGE and H2 requests: HTTP/2 with no upgrade, over
    plain TCP or TLS (ALPN h2), through the h2 library's client state machine."""
    request = case.request
    connection = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    connection.initiate_connection()
    headers = [(":method", request.method or "GET"), (":scheme", scheme),
               (":authority", request.host or address), (":path", request.path or "/"),
               *[(name.lower(), value) for name, value in request.headers.items()]]
    stream = connection.get_next_available_stream_id()
    connection.send_headers(stream, headers, end_stream=True)
    status, answered, body = 0, [], b""
    with _h2_socket(scheme, address, case, trust, client) as sock:
        sock.sendall(connection.data_to_send())
        done = False
        while not done:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed before the answer ended")
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    answered = [item for item in event.headers if not item[0].startswith(":")]
                    status = int(dict(event.headers)[":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    connection.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    done = True
            sock.sendall(connection.data_to_send())
    seen = json.loads(body) if dict(answered).get("content-type") == "application/json" else {
        "method": request.method or "GET"}
    grouped: dict[str, list[str]] = {}
    for name, value in answered:
        grouped.setdefault(name, []).append(value)
    return Captured(status=status, host=seen.get("host", ""), path=seen.get("path", ""),
                    method=seen.get("method", ""), namespace=seen.get("namespace", ""),
                    pod=seen.get("pod", ""), request_headers=seen.get("headers", {}),
                    response_headers=grouped, protocol=seen.get("proto", ""))


def batch(address: str, case: ExpectedResponse, count: int) -> list[str]:
    """The pods answering `count` requests on one kept-alive connection, each balanced by the
    Gateway on its own; a request that does not match the case counts as no pod."""
    connection = _open("http", address, case, b"")
    pods = []
    try:
        for _ in range(count):
            captured = _exchange(connection, address, case)
            pods.append(captured.pod if captured.status in (200,) else "")
    except (OSError, http.client.HTTPException):
        return pods
    finally:
        connection.close()
    return pods


# ---- gRPC (grpc.DefaultClient: insecure, h2c to the Gateway address) --------------------------

def grpc_call(address: str, case: GRPCCase) -> tuple[int, Any]:
    """One call of the case's method with its metadata (keys lowercased, as Go's
    metadata.New does) and authority: the status code and the EchoResponse (None unless
    OK)."""
    options = [("grpc.default_authority", case.authority)] if case.authority else []
    with grpc.insecure_channel(address, options=options) as channel:
        call = channel.unary_unary(grpcecho.full_method(case.method),
                                   request_serializer=lambda message: message.SerializeToString(),
                                   response_deserializer=grpcecho.EchoResponse.FromString)
        try:
            response = call(grpcecho.EchoRequest(), metadata=_metadata(case),
                             timeout=10)
        except grpc.RpcError as error:
            return error.code().value[0], None  # type: ignore[attr-defined]
        return 0, response


def _metadata(case: GRPCCase) -> list[tuple[str, str]]:
    return [(key.lower(), value) for key, value in case.metadata.items()]


def grpc_mismatch(case: GRPCCase, code: int, response: Any) -> str | None:
    """grpc.go compareResponse: the code; on OK the method the backend saw, its namespace
    (when expected) and the pod's name starting with Backend; and the metadata it saw."""
    if code != case.code:
        return f"expected status code {case.code}, got {code}"
    if code != 0:
        return None
    assertions = response.assertions
    if assertions.fully_qualified_method != grpcecho.full_method(case.method):
        return f"expected path {grpcecho.full_method(case.method)}, got " \
               f"{assertions.fully_qualified_method}"
    if case.namespace and case.namespace != assertions.context.namespace:
        return f"expected namespace {case.namespace}, got {assertions.context.namespace}"
    if not assertions.context.pod.startswith(case.backend):
        return f"expected pod name to start with {case.backend}, got {assertions.context.pod}"
    seen = {header.key.lower(): header.value for header in assertions.headers}
    for name, value in case.expected_metadata.items():
        if seen.get(name.lower()) != value:
            return f"expected metadata {name}={value}, got {seen.get(name.lower())}"
    for name in case.absent_metadata:
        if name.lower() in seen:
            return f"expected no metadata {name}, got {seen[name.lower()]}"
    return None


def grpc_batch(address: str, case: GRPCCase, count: int) -> list[str]:
    """The pods answering `count` calls on one channel, each balanced on its own."""
    options = [("grpc.default_authority", case.authority)] if case.authority else []
    pods = []
    with grpc.insecure_channel(address, options=options) as channel:
        call = channel.unary_unary(grpcecho.full_method(case.method),
                                   request_serializer=lambda message: message.SerializeToString(),
                                   response_deserializer=grpcecho.EchoResponse.FromString)
        for _ in range(count):
            try:
                response = call(grpcecho.EchoRequest(), metadata=_metadata(case),
                                timeout=10)
            except grpc.RpcError:
                pods.append("")
                continue
            pods.append(response.assertions.context.pod)
    return pods


# ---- WebSocket (golang.org/x/net/websocket's Dial and Message codec) -------------------------

def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The response head up to its blank line, and what came after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed before the handshake's answer: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def handshake_mismatch(head: bytes, key: str) -> str | None:
    """x/net/websocket hybiClientHandshake's checks of the answer: 101, Upgrade websocket,
    Connection Upgrade, Sec-WebSocket-Accept of our key (RFC 6455 4.1)."""
    status, *lines = head.decode("latin-1").split("\r\n")
    if status.split(" ")[1:2] != ["101"]:
        return f"handshake answered {status!r}"
    headers = {name.strip().lower(): value.strip() for name, _, value in
               (line.partition(":") for line in lines)}
    if headers.get("upgrade", "").lower() != "websocket" or \
            headers.get("connection", "").lower() != "upgrade":
        return f"handshake answer without Upgrade: websocket: {headers}"
    if headers.get("sec-websocket-accept") != websocket.accept_value(key):
        return "handshake answer with a wrong Sec-WebSocket-Accept"
    return None


def websocket_echo(address: str, path: str, origin: str,
                   messages: tuple[websocket.Frame, ...]) -> str | None:
    """Dial ws://ADDRESS/PATH with Origin, send each message as one masked frame and read one
    frame back, which must carry the same payload (Message.Receive takes a text or binary
    frame alike); None when every one came back."""
    host, port = split_address(address)
    key = websocket.new_key()
    request = (f"GET {path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nOrigin: {origin}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n")
    try:
        with socket.create_connection((host, port or 80), timeout=10) as sock:
            sock.sendall(request.encode())
            head, rest = _read_head(sock)
            problem = handshake_mismatch(head, key)
            if problem is not None:
                return problem
            reader = websocket.FrameReader(expect_masked=False)
            pending = reader.feed(rest)
            for message in messages:
                sock.sendall(websocket.encode(message, os.urandom(4)))
                while not pending:
                    data = sock.recv(65536)
                    if not data:
                        return "connection closed before the reply"
                    pending = reader.feed(data)
                reply = pending.pop(0)
                if reply.payload != message.payload:
                    return f"unexpected reply - want: {message.payload!r} got: {reply.payload!r}"
            sock.sendall(websocket.encode(websocket.Frame(websocket.CLOSE, b"\x03\xe8"),
                                          os.urandom(4)))
    except (OSError, websocket.ProtocolError) as error:
        return f"request failed: {error!r}"
    return None
