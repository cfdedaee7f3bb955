"""Differential: HCM configs Envoy 1.40 accepts that we used to refuse, Envoy vs ours.

Measured on Envoy 1.40:
- an HCM without `http_filters` has no router (none is added): a complete request gets 504
  "stream timeout" when the stream idle timeout fires (a direct_response route included), an
  incomplete one 408, as ConnectionManagerImpl::ActiveStream::onIdleTimeout
  (maybeRequestTimeoutCode);
- local_ratelimit in the HCM without `token_bucket` limits nothing and counts `enabled`/`ok`;
- enum names in lower or mixed case (`codec_type: auto`, `lb_policy: round_robin`) and a
  listener without a `name` are accepted.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from tests.support.bootstraps import ROUTER, http_bootstrap, static_cluster
from tests.support.differential import envoy_and_pointsman
from tests.support.envoy import Envoy
from tests.support.http_backends import EchoBackend
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance

HUNDRED = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}


def _exchange(port: int, data: bytes, timeout: float = 15.0) -> tuple[bytes, float]:
    """Send `data`, read until the proxy closes or the response is complete; (bytes, secs)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")]
            if length and len(body) >= length[0]:
                break
    return received, time.monotonic() - started


def _status_and_body(response: bytes) -> tuple[bytes, bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


def _no_filters(port: int) -> dict[str, Any]:
    config = http_bootstrap(port, [{"match": {"prefix": "/"},
                                    "direct_response": {"status": 200,
                                                        "body": {"inline_string": "OK"}}}],
                            [], stream_idle_timeout="1s")
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    del hcm["typed_config"]["http_filters"]
    return config


def test_hcm_without_http_filters_answers_nothing_until_the_idle_timeout() -> None:
    complete = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"
    partial = b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nabc"
    results = {}
    with envoy_and_pointsman(_no_filters, "no-http-filters") as (envoy_port, ours_port):
        for kind, port in (("envoy", envoy_port), ("pointsman", ours_port)):
            answers = [_exchange(port, data) for data in (complete, partial)]
            results[kind] = [_status_and_body(response) for response, _ in answers]
            # Nothing answers before the 1 s stream idle timeout (generous upper bound).
            assert all(0.9 <= took < 8 for _, took in answers), (kind, answers)
    assert results["envoy"] == [(b"HTTP/1.1 504 Gateway Timeout", b"stream timeout"),
                                (b"HTTP/1.1 408 Request Timeout", b"stream timeout")]
    assert results["pointsman"] == results["envoy"]


def _no_token_bucket(port: int, backend: int) -> dict[str, Any]:
    limiter = {"name": "envoy.filters.http.local_ratelimit", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3"
                 ".LocalRateLimit",
        "stat_prefix": "rl", "filter_enabled": HUNDRED, "filter_enforced": HUNDRED}}
    return http_bootstrap(port, [{"match": {"prefix": "/"}, "route": {"cluster": "b"}}],
                          [static_cluster("b", [backend])], stat_prefix="l7",
                          http_filters=[limiter, ROUTER])


def test_local_ratelimit_without_token_bucket_limits_nothing() -> None:
    names = [f"rl.http_local_rate_limit.{name}"
             for name in ("enabled", "ok", "rate_limited", "enforced")]
    with EchoBackend("b") as backend:
        envoy_port, ours_port = free_port(), free_port()
        envoy = Envoy(_no_token_bucket(envoy_port, backend.port), name="envoy-no-bucket")
        ours = Pointsman(_no_token_bucket(ours_port, backend.port), name="pointsman-no-bucket")
        with envoy, ours:
            envoy.wait_ready()
            ours.wait_ready()
            statuses = {kind: [_status_and_body(_exchange(
                port, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")[0])[0] for _ in range(5)]
                for kind, port in (("envoy", envoy_port), ("pointsman", ours_port))}
            stats = {"envoy": [envoy.stat(name) for name in names],
                     "pointsman": [ours.stat(name) for name in names]}
    assert statuses["envoy"] == [b"HTTP/1.1 200 OK"] * 5
    assert statuses["pointsman"] == statuses["envoy"]
    assert stats["envoy"] == [5, 5, 0, 0]
    assert stats["pointsman"] == stats["envoy"]


def _lower_case(port: int, backend: int) -> dict[str, Any]:
    config = http_bootstrap(port, [{"match": {"prefix": "/"}, "route": {"cluster": "b"}}],
                            [static_cluster("b", [backend], type="static",
                                            lb_policy="Round_Robin")],
                            codec_type="auto")
    del config["static_resources"]["listeners"][0]["name"]
    return config


def test_lower_case_enums_and_an_unnamed_listener_start_and_serve() -> None:
    with EchoBackend("b") as backend, \
            envoy_and_pointsman(lambda port: _lower_case(port, backend.port),
                                "lower-case") as (envoy_port, ours_port):
        answers = {port: _status_and_body(_exchange(
            port, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")[0])[0]
            for port in (envoy_port, ours_port)}
    assert answers[envoy_port] == b"HTTP/1.1 200 OK"
    assert answers[ours_port] == answers[envoy_port]
