"""The Gateway API conformance suite's expectations as data, and its checks as functions.

The suite (kubernetes-sigs/gateway-api `conformance/`, commit in upstream/UPSTREAM) states each
test case as an `http.ExpectedResponse`; a mesh client checks what the echo server reports with
`echo/pod.go` compareRequest, a gateway client with `http/http.go` CompareRoundTrip, and weights
with `weight/weight.go`. These classes mirror those structs field for field (Go's zero values are
the defaults), and the functions below apply the same rules, so a translated test means what the
upstream test means. Each check returns why the observation does not match, or None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MESH_NAMESPACE = "gateway-conformance-mesh"  # suite.MeshNamespace
MESH_CONSUMER_NAMESPACE = "gateway-conformance-mesh-consumer"  # suite.MeshConsumerNamespace
ECHO_V1 = "app=echo,version=v1"  # echo.MeshAppEchoV1
ECHO_V2 = "app=echo,version=v2"  # echo.MeshAppEchoV2

# http.Request.Host of MeshFrontend's "Send to pod IP" case: http.Ipv6SafeHost(v2.Address) +
# ":8080", the address of the first echo-v2 pod, known only once the workloads run.
POD_ADDRESS_OF_ECHO_V2 = "{pod-address:" + ECHO_V2 + "}"

WEIGHT_TOLERANCE = 0.05  # weight.go tolerancePercentage
WEIGHT_REQUESTS = 500  # weight.go totalRequests
WEIGHT_RETRIES = 10  # weight.MaxTestRetries


@dataclass(frozen=True)
class Request:
    """http.Request: what the client sends."""

    host: str = ""
    method: str = ""
    path: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    unfollow_redirect: bool = False
    protocol: str = ""  # "" is http; "grpc"; gateway tests: "H2", "H2C_PRIOR_KNOWLEDGE"
    sni: str = ""  # gateway tests (Request.SNI): the SNI the backend should report
    client_cert: str = ""  # gateway tests (Request.ClientCert): the certificate the Gateway
    # must present to a TLS backend; here the name of the Secret holding it


@dataclass(frozen=True)
class ExpectedRequest:
    """http.ExpectedRequest: what the backend should have seen."""

    host: str = ""
    path: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    absent_headers: tuple[str, ...] = ()
    method: str = ""  # gateway tests (ExpectedRequest embeds Request)
    sni: str = ""  # the SNI the (TLS) backend saw


@dataclass(frozen=True)
class RedirectRequest:
    """roundtripper.RedirectRequest: where a redirect sends the client ("" takes a default)."""

    scheme: str = ""
    host: str = ""
    port: str = ""
    path: str = ""


@dataclass(frozen=True)
class Response:
    """http.Response: status (StatusCode joins StatusCodes) and response headers."""

    status_code: int = 0
    status_codes: tuple[int, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    absent_headers: tuple[str, ...] = ()
    # gateway tests: a header may take any of several values (ValidHeaderValues), compared with
    # whitespace ignored when IgnoreWhitespace
    valid_header_values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    ignore_whitespace: bool = False
    protocol: str = ""  # gateway tests: the protocol the answer must come over, when set

    def accepted_statuses(self) -> tuple[int, ...]:
        """makeRequestWithCount: StatusCode is added to StatusCodes; none means 200."""
        codes = self.status_codes
        if self.status_code and self.status_code not in codes:
            codes = (*codes, self.status_code)
        return codes or (200,)


@dataclass(frozen=True)
class MirroredBackend:
    """http.MirroredBackend: a backend a request is mirrored to (percent: RequestMirror's
    percent or fraction, None for every request)."""

    name: str
    namespace: str
    percent: int | None = None


@dataclass(frozen=True)
class ExpectedResponse:
    """http.ExpectedResponse."""

    request: Request = Request()
    expected_request: ExpectedRequest | None = None
    redirect_request: RedirectRequest | None = None
    response: Response = Response()
    backend: str = ""
    namespace: str = ""
    test_case_name: str = ""
    # gateway tests: headers the echo backend is asked to set on its response
    # (BackendSetResponseHeaders; sent to it as X-Echo-Set-Header), and the SNI to send
    # (ServerName)
    backend_set_response_headers: Mapping[str, str] = field(default_factory=dict)
    server_name: str = ""
    mirrored_to: tuple[MirroredBackend, ...] = ()  # MirroredTo

    def name(self, index: int) -> str:
        """ExpectedResponse.GetTestCaseName."""
        if self.test_case_name:
            return self.test_case_name
        headers = " with headers" if self.request.headers else ""
        described = f"{index} request to '{self.request.host}{self.request.path}'{headers}"
        if self.backend:
            return f"{described} should go to {self.backend}"
        return f"{described} should receive one of {list(self.response.accepted_statuses())}"


@dataclass(frozen=True)
class Observed:
    """What one exchange showed: the status, the request as the echo backend reported it (its
    headers, path), the response headers, and the pod that answered."""

    status: int
    request_headers: Mapping[str, Sequence[str]]
    response_headers: Sequence[tuple[str, str]]
    hostname: str
    namespace: str = ""
    path: str = ""
    location: str = ""


def mesh_mismatch(expected: ExpectedResponse, observed: Observed) -> str | None:
    """echo/pod.go compareRequest, rule for rule: the status (for gRPC, a 0 in the list means
    200), the backend's request headers present with their values joined by "," and the absent
    ones absent (names compared case-insensitively), the response headers, and the pod name
    starting with the expected backend. The mesh client checks neither the path the backend saw
    nor a redirect's Location; the gateway checks below do."""
    statuses = expected.response.accepted_statuses()
    if expected.request.protocol.lower() == "grpc":
        statuses = tuple(code or 200 for code in statuses)
    if observed.status not in statuses:
        return f"wanted status code to be one of {list(statuses)}, got {observed.status}"
    seen = {name.lower(): list(values) for name, values in observed.request_headers.items()}
    wanted = expected.expected_request or ExpectedRequest()
    for name, value in wanted.headers.items():
        if name.lower() not in seen:
            return f"expected {name} header to be set, actual headers: {seen}"
        actual = ",".join(seen[name.lower()])
        if actual != value:
            return f"expected {name} header to be set to {value}, got {actual}"
    for name in wanted.absent_headers:
        if name.lower() in seen:
            return f"expected {name} header to not be set, got {seen[name.lower()]}"
    response = {}
    for name, value in observed.response_headers:
        response.setdefault(name.lower(), value)  # http.Header.Get: the first value
    for name in expected.response.absent_headers:
        if name.lower() in response:
            return f"expected no header {name!r}, got {response[name.lower()]!r}"
    for name, value in expected.response.headers.items():
        if response.get(name.lower(), "") != value:
            return f"expected header {name}={value}, got {response.get(name.lower(), '')}"
    if not observed.hostname.startswith(expected.backend):
        return f"expected pod name to start with {expected.backend}, got {observed.hostname}"
    return None


def redirect_mismatch(expected: ExpectedResponse, request_url: str, location: str) -> str | None:
    """http.go CompareRoundTrip's redirect rules: an expected field left empty takes the
    request's scheme and path and the Location's host; with no expected port, an http
    redirect's port is 80 or absent and an https one's 443 or absent."""
    wanted = expected.redirect_request
    if wanted is None:
        return None
    sent, got = urlsplit(request_url), urlsplit(location)
    got_host, got_port = got.hostname or "", str(got.port or "")
    host = wanted.host or got_host
    scheme = wanted.scheme or sent.scheme
    path = wanted.path or sent.path
    if host != got_host:
        return f"expected redirected hostname to be {host!r}, got {got_host!r}"
    if not wanted.port:
        default = {"http": "80", "https": "443"}.get(got.scheme.lower())
        if default is not None and got_port not in ("", default):
            return (f"for {got.scheme} scheme, expected redirected port to be {default} or "
                    f"not set, got {got_port!r}")
    elif wanted.port != got_port:
        return f"expected redirected port to be {wanted.port!r}, got {got_port!r}"
    if scheme != got.scheme:
        return f"expected redirected scheme to be {scheme!r}, got {got.scheme!r}"
    if path != got.path:
        return f"expected redirected path to be {path!r}, got {got.path!r}"
    return None


def backend_name(pod: str) -> str:
    """weight.go extractBackendName: a Deployment's pod name less its two generated parts."""
    parts = pod.split("-")
    return pod if len(parts) < 3 else "-".join(parts[:-2])


def weights_mismatch(weights: Mapping[str, float], pods: Sequence[str]) -> str | None:
    """weight.go TestWeightedDistributionBatch: every answer from an expected backend, as many
    backends answering as have a weight above 0, each share within 5 points of its weight."""
    if len(pods) != WEIGHT_REQUESTS:
        return f"expected {WEIGHT_REQUESTS} responses but got {len(pods)}"
    seen: dict[str, int] = {}
    for pod in pods:
        name = backend_name(pod)
        if name not in weights:
            return f"request was handled by an unexpected pod {pod!r} (extracted backend: {name!r})"
        seen[name] = seen.get(name, 0) + 1
    errors = []
    active = sum(1 for weight in weights.values() if weight > 0.0)
    if len(seen) != active:
        errors.append(f"expected {active} backends to receive traffic, but got {len(seen)}")
    for name, weight in weights.items():
        if name not in seen and weight != 0.0:
            errors.append(f"expect traffic to hit backend {name!r} - but none was received")
            continue
        share = seen.get(name, 0) / WEIGHT_REQUESTS
        if abs(share - weight) > WEIGHT_TOLERANCE:
            errors.append(f"backend {name!r} weighted traffic of {share} not within tolerance "
                          f"{weight} (+/-{WEIGHT_TOLERANCE:f})")
    return "\n".join(sorted(errors)) or None


REDIRECT_STATUSES = (300, 301, 302, 303, 304, 305, 307, 308)  # roundtripper.IsRedirect
TIMEOUT_STATUSES = (408, 504)  # roundtripper.IsTimeoutError


@dataclass(frozen=True)
class Captured:
    """What the gateway client captured of one round trip (roundtripper.CapturedRequest, as
    the echo backend reports it, and CapturedResponse): header names in any case, values as
    lists."""

    status: int
    host: str = ""
    path: str = ""
    method: str = ""
    namespace: str = ""
    pod: str = ""
    request_headers: Mapping[str, Sequence[str]] = field(default_factory=dict)
    response_headers: Mapping[str, Sequence[str]] = field(default_factory=dict)
    protocol: str = ""
    sni: str = ""  # TLS.ServerName the backend saw
    peer_certificates: tuple[str, ...] = ()  # client certificates the backend saw (PEM)
    location: str = ""  # a redirect's Location


def _lowered(headers: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    return {name.lower(): list(values) for name, values in headers.items()}


def gateway_mismatch(expected: ExpectedResponse, request_url: str,
                     captured: Captured) -> str | None:
    """http.go CompareRoundTrip for the gateway client, rule for rule. The status must be one
    of the accepted ones (a 408/504 passes when one is accepted). On 200 or 204, the request
    the backend saw is compared with ExpectedRequest, which defaults to the request sent
    (method GET when not set): host when set, path, method, namespace, headers (values joined
    by ","), absent headers; the response headers exactly, or among ValidHeaderValues (spaces
    dropped with IgnoreWhitespace), absent response headers; the pod name starting with
    Backend; SNI and client certificate when set. On a redirect, redirect_mismatch. Names
    compare case-insensitively. `expected.request.client_cert` names a Secret here: the
    runner substitutes its PEM before calling."""
    statuses = expected.response.accepted_statuses()
    if captured.status in TIMEOUT_STATUSES and any(s in TIMEOUT_STATUSES for s in statuses):
        return None
    if captured.status not in statuses:
        return f"expected status code to be one of {list(statuses)}, got {captured.status}"
    if expected.response.protocol and expected.response.protocol != captured.protocol:
        return (f"expected protocol to be {expected.response.protocol}, "
                f"got {captured.protocol}")
    if captured.status in (200, 204):
        request = expected.request
        wanted = expected.expected_request or ExpectedRequest(
            host=request.host, path=request.path, headers=request.headers,
            method=request.method or "GET", sni=request.sni)
        if wanted.host and wanted.host != captured.host:
            return f"expected host to be {wanted.host}, got {captured.host}"
        if wanted.path != captured.path:
            return f"expected path to be {wanted.path}, got {captured.path}"
        if (wanted.method or "GET") != captured.method:
            return f"expected method to be {wanted.method or 'GET'}, got {captured.method}"
        if expected.namespace != captured.namespace:
            return f"expected namespace to be {expected.namespace}, got {captured.namespace}"
        seen = _lowered(captured.request_headers)
        for name, value in wanted.headers.items():
            if name.lower() not in seen:
                return f"expected {name} header to be set, actual headers: {seen}"
            if ",".join(seen[name.lower()]) != value:
                return (f"expected {name} header to be set to {value}, "
                        f"got {','.join(seen[name.lower()])}")
        answered = _lowered(captured.response_headers)
        response = expected.response
        squeeze = (lambda text: text.replace(" ", "")) if response.ignore_whitespace else str
        for name, values in response.valid_header_values.items():
            if name.lower() not in answered:
                return f"expected {name} header to be set, actual headers: {answered}"
            got = squeeze(",".join(answered[name.lower()]))
            if got not in [squeeze(value) for value in values]:
                return f"expected {name} header to be set to one of {list(values)}, got {got}"
        for name, value in response.headers.items():
            if name.lower() not in answered:
                return f"expected {name} header to be set, actual headers: {answered}"
            got = squeeze(",".join(answered[name.lower()]))
            if got != squeeze(value):
                return f"expected {name} header to be set to {value}, got {got}"
        for name in response.absent_headers:
            if name.lower() in answered:
                return f"expected {name} header to not be set, got {answered[name.lower()]}"
        for name in wanted.absent_headers:
            if name.lower() in seen:
                return f"expected {name} header to not be set, got {seen[name.lower()]}"
        if not captured.pod.startswith(expected.backend):
            return f"expected pod name to start with {expected.backend}, got {captured.pod}"
        if wanted.sni and wanted.sni != captured.sni:
            return f"expected SNI {captured.sni!r} to be equal to {wanted.sni!r}"
        client_cert = request.client_cert if expected.expected_request is None else ""
        if client_cert and client_cert not in captured.peer_certificates:
            return "expected client certificate was not captured"
    elif captured.status in REDIRECT_STATUSES:
        return redirect_mismatch(expected, request_url, captured.location)
    return None
