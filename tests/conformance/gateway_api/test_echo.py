"""The echo server's answer (echo.py), without sockets: the JSON the suite's checks read, the
response headers X-Echo-Set-Header asks for and the retry simulation's decisions."""

from __future__ import annotations

from tests.conformance.gateway_api.echo import (
    Fail,
    Refuse,
    RetrySimulation,
    echo_set_headers,
    query_delay,
    ready_line,
    report,
    tls_assertions,
)


def test_the_report_groups_repeated_headers_under_the_name_received() -> None:
    found = report("echo-v1-abc-def", "ns", path="/a?b=1", host="echo", method="GET",
                   proto="HTTP/1.1", headers=[("X-A", "1"), ("X-A", "2"), ("Host", "echo")])
    assert found == {"path": "/a?b=1", "host": "echo", "method": "GET", "proto": "HTTP/1.1",
                     "headers": {"X-A": ["1", "2"], "Host": ["echo"]}, "namespace": "ns",
                     "pod": "echo-v1-abc-def"}


def test_x_echo_set_header_names_the_response_headers() -> None:
    assert echo_set_headers([("x-echo-set-header", "a:1, b : 2,bad"), ("X-Other", "c:3")]) == [
        ("a", "1"), ("b", "2")]


def test_delay_takes_a_go_duration_from_the_query() -> None:
    """echo-basic's ?delay= (the timeout tests send /request-timeout?delay=1s)."""
    assert query_delay("/request-timeout?delay=1s") == 1.0
    assert query_delay("/x?a=b&delay=300ms") == 0.3
    assert query_delay("/x?delay=soon") == 0.0 and query_delay("/x") == 0.0


def test_the_retry_simulation_fails_succeed_after_attempts_per_uuid_then_echoes() -> None:
    """echo-basic's retrySimulationHandler: `succeedAfter` failed attempts per uuid, with
    `responseCode`, then the echo; another uuid counts apart."""
    simulation = RetrySimulation()
    path = "/retry/x?responseCode=503&succeedAfter=2&uuid=a"
    assert simulation.attempt(path) == Fail(503, 0.0)
    assert simulation.attempt("/retry/x?responseCode=503&succeedAfter=2&uuid=b") == \
        Fail(503, 0.0)
    assert simulation.attempt(path) == Fail(503, 0.0)
    assert simulation.attempt(path) is None
    assert simulation.attempt(path) is None


def test_the_retry_simulation_resets_without_a_response_code_and_delays_retries() -> None:
    simulation = RetrySimulation()
    assert simulation.attempt("/retry/x?succeedAfter=1&uuid=a&delayRetry=300ms") == \
        Fail(None, 0.3)
    assert simulation.attempt("/retry/x?succeedAfter=1&uuid=a&delayRetry=300ms") is None
    assert simulation.attempt("/retry/x?succeedAfter=0&uuid=c&responseCode=500") is None


def test_the_retry_simulation_needs_a_uuid_and_succeed_after() -> None:
    simulation = RetrySimulation()
    assert simulation.attempt("/retry/x?succeedAfter=1") == Refuse("uuid is required")
    assert simulation.attempt("/retry/x?uuid=a&succeedAfter=soon") == \
        Refuse("succeedAfter is required")


def test_a_bind_failure_is_not_the_ready_line() -> None:
    """The runners wait for ready_line: an echo that could not bind (another harness holds the
    address) must not pass for ready, as it did when they looked for the word "ready"."""
    failed = "OSError: [Errno 98] Address already in use\n"
    assert "ready" in failed
    assert ready_line("ns", "pod-1") not in failed
    assert ready_line("ns", "pod-1") in f"{ready_line('ns', 'pod-1')}\n"


class _TlsConnection:
    """What tls_assertions reads of an ssl.SSLSocket, with the SNI _remember_sni kept."""

    sni = "abc.example.com"

    def version(self) -> str:
        return "TLSv1.3"

    def selected_alpn_protocol(self) -> str | None:
        return "http/1.1"

    def cipher(self) -> tuple[str, str, int]:
        return ("TLS_AES_128_GCM_SHA256", "TLSv1.3", 128)

    def getpeercert(self, binary_form: bool = False) -> bytes | None:
        return None  # no client certificate presented


def test_tls_requests_report_the_sni_the_client_sent() -> None:
    """echo-basic's TLSAssertions: the BackendTLSPolicy tests compare serverName with the
    policy's hostname."""
    assert tls_assertions(_TlsConnection()) == {
        "version": "TLSv1.3", "serverName": "abc.example.com", "negotiatedProtocol": "http/1.1",
        "cipherSuite": "TLS_AES_128_GCM_SHA256"}


class _ClientCertified(_TlsConnection):
    def getpeercert(self, binary_form: bool = False) -> bytes | None:
        return b"\x30\x03\x02\x01\x01"  # DER bytes, as ssl returns them


def test_a_client_certificate_is_reported_as_pem() -> None:
    """GatewayTLSBackendClientCertificate looks for the Gateway's certificate there."""
    assert tls_assertions(_ClientCertified())["peerCertificates"] == [
        "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n"]
