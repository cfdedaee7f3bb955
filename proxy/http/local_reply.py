"""Locally generated responses (Envoy `sendLocalReply`), plain or gRPC.

For a gRPC request Envoy answers HTTP 200 "trailers-only" with `grpc-status` mapped from the
HTTP code (grpc/doc/http-grpc-status-mapping.md) unless a status is forced (the router forces
DEADLINE_EXCEEDED on upstream timeout), and the body text in `grpc-message`.
"""

from __future__ import annotations

from urllib.parse import quote

from proxy.codec.headers import Headers, RequestHead, ResponseHead
from proxy.http.filter import LocalReply

GRPC_OK = 0
GRPC_UNKNOWN = 2
GRPC_DEADLINE_EXCEEDED = 4
GRPC_PERMISSION_DENIED = 7
GRPC_UNIMPLEMENTED = 12
GRPC_INTERNAL = 13
GRPC_UNAVAILABLE = 14
GRPC_UNAUTHENTICATED = 16

_HTTP_TO_GRPC = {400: GRPC_INTERNAL, 401: GRPC_UNAUTHENTICATED, 403: GRPC_PERMISSION_DENIED,
                 404: GRPC_UNIMPLEMENTED, 429: GRPC_UNAVAILABLE, 502: GRPC_UNAVAILABLE,
                 503: GRPC_UNAVAILABLE, 504: GRPC_UNAVAILABLE}


def grpc_status_for_http(status: int) -> int:
    return _HTTP_TO_GRPC.get(status, GRPC_UNKNOWN)


def render_local_reply(reply: LocalReply, request: RequestHead | None) -> tuple[ResponseHead,
                                                                                 bytes]:
    headers = reply.headers.copy()
    if request is not None and request.is_grpc() and not reply.verbatim:
        status = reply.grpc_status if reply.grpc_status is not None \
            else grpc_status_for_http(reply.status)
        headers.set("content-type", "application/grpc")
        headers.set("grpc-status", str(status))
        if reply.body:
            # gRPC spec: grpc-message is percent-encoded.
            headers.set("grpc-message", quote(reply.body, safe=" !#$&'()*+,/:;=?@[]~"))
        return ResponseHead(200, headers), b""
    body = reply.body.encode()
    if body:
        headers.set("content-type", "text/plain")
        headers.set("content-length", str(len(body)))
    # An empty reply carries no content-length on HTTP/2 (as Envoy); the HTTP/1.1 codec adds
    # `content-length: 0` for framing.
    if request is not None and request.method == "HEAD":
        body = b""
    return ResponseHead(reply.status, headers), body


def merge_headers(target: Headers, extra: Headers) -> None:
    for name, value in extra:
        target.add(name, value)
