"""The shape of a translated gateway test: its metadata as upstream's suite.ConformanceTest
holds it, and its steps in the Go test's order: status expectations and procedural steps
(status.py) and what the gateway client sends and expects (the classes below). The runner that
plays these against Pointsman is another session's work; these are data only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tests.conformance.gateway_api.expectations import ExpectedResponse, Response
from tests.conformance.gateway_api.status import (
    INFRA_NAMESPACE,
    NN,
    Apply,
    AttachedListeners,
    Create,
    Delete,
    GatewayClassAccepted,
    GatewayCondition,
    GatewayListeners,
    GatewayRef,
    GatewayZeroRoutes,
    LatestConditions,
    ListenersConditions,
    NamespacesReady,
    ObservedGenerationBumped,
    RouteCondition,
    RouteNoAcceptedParents,
    RouteParents,
    RoutesAccepted,
    Update,
)

UNIMPLEMENTED = 12  # codes.Unimplemented
V1, V2, V3 = "infra-backend-v1", "infra-backend-v2", "infra-backend-v3"  # InfraBackendServiceNameV*
INFRA = INFRA_NAMESPACE
SAME_NAMESPACE = GatewayRef("same-namespace")  # the base manifests' HTTP Gateway on port 80


WEB = "gateway-conformance-web-backend"
APP = "gateway-conformance-app-backend"


def _secret(name: str, namespace: str, how: str, names: tuple[str, ...] = (),
            ca: str = "") -> Create:
    spec: dict[str, object] = {"type": "kubernetes.io/tls", "generated": how}
    if names:
        spec["dnsNames"] = list(names)
    if ca:
        spec["signedBy"] = ca
    return Create("Secret", NN(name, namespace), spec)


def _ca(name: str, namespace: str = INFRA) -> Create:
    return Create("ConfigMap", NN(name, namespace), {"data": {"ca.crt": "a new CA, PEM"}},
                  "MustCreateCACertConfigMap")


# What the suite creates in code after applying base/manifests.yaml (suite.go Setup, "Applying
# programmatic resources"), in order: the certificates and CAs the gateway tests name. A
# Secret's `signedBy` is the CA ConfigMap created just before it.
SUITE_SETUP: tuple[Create, ...] = (
    _secret("certificate", WEB, "MustCreateSelfSignedCertSecret", ("*",)),
    _secret("tls-validity-checks-certificate", INFRA, "MustCreateSelfSignedCertSecret",
            ("*", "*.org", "*.wildcard.org")),
    _ca("web-backend-cm", WEB),
    _ca("tls-validity-checks-ca-certificate"),
    _secret("tls-validity-checks-client-certificate", INFRA,
            "MustCreateCASignedClientCertSecret", ca="tls-validity-checks-ca-certificate"),
    _ca("tls-validity-checks-per-port-ca-certificate"),
    _secret("tls-validity-checks-per-port-client-certificate", INFRA,
            "MustCreateCASignedClientCertSecret",
            ca="tls-validity-checks-per-port-ca-certificate"),
    _ca("tls-checks-ca-certificate"),
    _secret("tls-checks-certificate", INFRA, "MustCreateCASignedCertSecret",
            ("abc.example.com", "spiffe://abc.example.com/test-identity", "other.example.com"),
            ca="tls-checks-ca-certificate"),
    _secret("tls-checks-client-certificate", INFRA, "MustCreateCASignedClientCertSecret",
            ca="tls-checks-ca-certificate"),
    _secret("tls-passthrough-checks-certificate", INFRA, "MustCreateCASignedCertSecret",
            ("abc.example.com",), ca="tls-checks-ca-certificate"),
    _secret("tls-passthrough-checks-certificate", APP, "MustCreateCASignedCertSecret",
            ("abc.example.com",), ca="tls-checks-ca-certificate"),
    _secret("tls-terminate-checks-certificate", INFRA, "MustCreateCASignedCertSecret",
            ("tls.example.com",), ca="tls-checks-ca-certificate"),
    _ca("mismatch-ca-certificate"),  # BackendTLSPolicy: a CA that validates nothing
)


@dataclass(frozen=True)
class GatewayAddress:
    """WaitForGatewayAddress alone (no status check): the Gateway has an address, the one the
    following exchanges of this Gateway use."""

    gateway: GatewayRef


@dataclass(frozen=True)
class GatewayExchanges:
    """Each case sent by the gateway client to the address of `gateway` (WaitForGatewayAddress:
    the first listener of the ref, its port kept unless `use_port` is False) and retried until
    consistent (http.MakeRequestAndExpectEventuallyConsistentResponse, checked with
    CompareRoundTrip). With scheme "https" each case goes over TLS
    (tls.MakeTLSRequestAndExpectEventuallyConsistentResponse), SNI = the case's host, trusting
    the certificate of the Secret `server_cert`. `expect_failure` over HTTP: every answer
    must be an error status, neither 200 nor a timeout (http.MakeRequestAndExpectFailure,
    WaitForConsistentFailureResponse); over HTTPS the request must fail (the TLS helper's
    MakeTLSRequestAndExpectEventuallyConsistentFailureResponse)."""

    gateway: GatewayRef
    cases: tuple[ExpectedResponse, ...]
    scheme: str = "http"
    server_cert: NN | None = None
    use_port: bool = True
    expect_failure: bool = False
    note: str = ""
    port: str = ""  # set: the portless Gateway address joined with this port


@dataclass(frozen=True)
class GatewayGRPCExchanges:
    """grpc.MakeRequestAndExpectEventuallyConsistentResponse per case: a gRPC call of the
    suite's echo service (`method`: EchoService's Echo, EchoTwo or EchoThree) to the address
    of `gateway`, with `authority` and `metadata`; answered by `backend` in `namespace`, or
    failing with the gRPC status `code` (0 = OK)."""

    gateway: GatewayRef
    cases: tuple[GRPCCase, ...]
    expect_failure: bool = False  # grpc.MakeRequestAndExpectEventuallyConsistentFailure


@dataclass(frozen=True)
class GRPCCase:
    """grpc.ExpectedResponse: EchoRequest / EchoTwoRequest / EchoThreeRequest, the request
    metadata and authority, and what should answer (Backend, Namespace) or the status code."""

    method: str = "Echo"  # EchoRequest; "EchoTwo", "EchoThree"
    metadata: Mapping[str, str] = field(default_factory=dict)
    authority: str = ""
    backend: str = ""
    namespace: str = ""
    code: int = 0  # codes.OK; UNIMPLEMENTED = 12
    expected_metadata: Mapping[str, str] = field(default_factory=dict)
    absent_metadata: tuple[str, ...] = ()


@dataclass(frozen=True)
class GatewayWeighted:
    """The case made consistent first, then sent in batches and the answering backends'
    shares compared with `weights` (weight.TestWeightedDistribution, up to MaxTestRetries
    attempts; each sample has entropy added and must itself match: CompareRoundTrip for http,
    status OK for a GRPCCase, the pod read from the echo answer)."""

    gateway: GatewayRef
    expected: ExpectedResponse | GRPCCase
    weights: Mapping[str, float]


@dataclass(frozen=True)
class BackendHeaderNamesPod:
    """HTTPRouteRequestHeaderModifierBackendWeights: `expected` made consistent first, then the
    same request sent `count` times; each time the backend must have seen exactly one `Backend`
    request header (set by the backendRef's filter) and the answering pod's name must start with
    its value."""

    gateway: GatewayRef
    expected: ExpectedResponse
    count: int = 100


@dataclass(frozen=True)
class MirrorExchanges:
    """HTTPRouteRequestMirror / ...MultipleMirrors: per case a fresh request id is added as the
    query parameter gateway-api-conformance-request-id (AddRequestIDQueryParam, to the expected
    path too), the logs of every `mirrored_to` backend are watched from before the request
    (ExpectMirroredRequest), the request is made consistent, and each mirror must log it."""

    gateway: GatewayRef
    cases: tuple[ExpectedResponse, ...]


@dataclass(frozen=True)
class PercentMirror:
    """HTTPRouteRequestPercentageMirror, per case: made consistent first, then up to
    `checks` rounds of `requests` requests (10 at a time, each with one new request id per
    round); the mirror's log count must lie within `tolerance_stddevs` binomial standard
    deviations of requests * percent / 100 (testMirroredRequestsDistribution), 2 s between
    rounds."""

    gateway: GatewayRef
    cases: tuple[ExpectedResponse, ...]
    requests: int = 500
    checks: int = 5
    concurrency: int = 10
    tolerance_stddevs: float = 3.0


@dataclass(frozen=True)
class RetryProbe:
    """assertConsistentRetryBehaviour: GET path?<simulation>&uuid=<new per probe> (the echo
    backend's retry simulation: answer `responseCode` until `succeedAfter` attempts, delaying
    retries by `delayRetry`) until CompareRoundTrip accepts `response` from infra-backend-v3
    (AwaitConvergence: consistently)."""

    gateway: GatewayRef
    name: str
    path: str
    simulation: Mapping[str, str]
    response: Response
    backend: str = "infra-backend-v3"
    namespace: str = INFRA_NAMESPACE


@dataclass(frozen=True)
class WebSocketEcho:
    """HTTPRouteBackendProtocolWebSocket: dial ws://<gateway address>/ws (origin
    ws://gateway/<subtest name>), send a text frame and a binary frame, each echoed back
    unchanged; retried until it converges."""

    gateway: GatewayRef
    path: str = "/ws"
    text: str = "Websocket Support!"
    binary: bytes = bytes((1, 2, 3, 4, 5, 6, 7))


@dataclass(frozen=True)
class TLSExchange:
    """tls.MakeTLSRequestAndExpectEventuallyConsistentResponse: an https request to the address
    of `gateway` with SNI `server_name`, trusting the certificate of the Secret `server_cert`,
    checked as CompareRoundTrip checks `expected` (a TLS passthrough or terminate listener, or
    HTTPS). With `expect_failure`, the request must consistently fail (handshake refused or no
    answer)."""

    gateway: GatewayRef
    server_name: str
    server_cert: NN
    expected: ExpectedResponse
    client_cert: NN | None = None  # a Secret whose certificate and key the client presents
    port: str = ""  # set: the portless Gateway address joined with this port
    expect_failure: bool = False  # MakeTLSRequestAndExpectEventuallyConsistentFailureResponse


@dataclass(frozen=True)
class TLSRejected:
    """tls.MakeTLSConnectionAndExpectEventuallyConnectionRejection: a TLS handshake to the
    address of `gateway` with SNI `server_name` is refused, eventually and consistently."""

    gateway: GatewayRef
    server_name: str


@dataclass(frozen=True)
class TLSStream:
    """tcp.MakeTCPRequestAndExpectEventuallyValidResponse over TLS: a TLS connection with SNI
    `server_name` trusting the CA in ConfigMap `ca` (key ca.crt); the backend (itself TLS
    when `backend_is_tls`: passthrough, or re-encrypted by a BackendTLSPolicy) reports its
    name, namespace and the SNI it saw (`hostname`)."""

    gateway: GatewayRef
    server_name: str
    ca: NN
    backend: str
    namespace: str = INFRA_NAMESPACE
    backend_is_tls: bool = True
    hostname: str = ""  # the SNI the backend must report ("" when the Gateway terminates)


@dataclass(frozen=True)
class SkipIfSupported:
    """The Go test returns early (passes, checking nothing) when the implementation claims
    this feature (suite.SupportedFeatures.Has)."""

    feature: str


@dataclass(frozen=True)
class InfrastructurePropagated:
    """GatewayInfrastructure: some ServiceAccount, Pod or Service in the Gateway's namespace
    labelled gateway.networking.k8s.io/gateway-name=<name> appears; the first of each kind
    found carries every label and annotation of the Gateway's spec.infrastructure."""

    gateway: NN


@dataclass(frozen=True)
class StatusAddresses:
    """GatewayStaticAddresses' end: status.addresses eventually has exactly `count` entries,
    containing the spec addresses named in `present` (with their type) and none of `absent`;
    addresses are named by their index in the Gateway's original spec.addresses."""

    gateway: NN
    count: int
    present: tuple[int, ...] = ()
    absent: tuple[int, ...] = ()


@dataclass(frozen=True)
class Never:
    """A Go test that waits and checks something does not happen over a period (e.g.
    require.Never / Consistently); `what` says what must never be observed."""

    what: str
    seconds: float = 0.0


@dataclass(frozen=True)
class Subtest:
    """t.Run(name, ...): steps the Go test runs as one named subtest."""

    name: str
    steps: tuple[Step, ...]


Step = (RoutesAccepted | RouteCondition | RouteParents | RouteNoAcceptedParents
        | GatewayListeners | GatewayCondition | ListenersConditions | GatewayZeroRoutes
        | AttachedListeners | LatestConditions | GatewayClassAccepted | NamespacesReady
        | ObservedGenerationBumped | Apply | Update | Delete | Create | GatewayAddress
        | GatewayExchanges
        | GatewayGRPCExchanges | GatewayWeighted | BackendHeaderNamesPod | MirrorExchanges
        | PercentMirror | RetryProbe | WebSocketEcho | InfrastructurePropagated | StatusAddresses
        | TLSExchange | TLSRejected | TLSStream
        | SkipIfSupported | Never | Subtest)


@dataclass(frozen=True)
class GatewayConformanceTest:
    """suite.ConformanceTest's metadata and the Go test's steps, in order."""

    short_name: str
    description: str
    features: tuple[str, ...]
    manifests: tuple[str, ...]
    steps: tuple[Step, ...]
    provisional: bool = False
    upstream_file: str = field(default="", compare=False)
