"""The shape of a translated gateway test: its metadata as upstream's suite.ConformanceTest
holds it, and its steps in the Go test's order: status expectations and procedural steps
(status.py) and what the gateway client sends and expects (the classes below). The runner that
plays these against Pointsman is another session's work; these are data only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tests.conformance.gateway_api.expectations import ExpectedResponse
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


@dataclass(frozen=True)
class GatewayExchanges:
    """Each case sent by the gateway client to the address of `gateway` (WaitForGatewayAddress:
    the first listener of the ref, its port kept unless `use_port` is False) and retried until
    consistent (http.MakeRequestAndExpectEventuallyConsistentResponse, checked with
    CompareRoundTrip). With scheme "https" each case goes over TLS
    (tls.MakeTLSRequestAndExpectEventuallyConsistentResponse), SNI = the case's host, trusting
    the certificate of the Secret `server_cert`. `expect_failure`: the request must
    consistently fail to connect (http.MakeRequestAndExpectFailure)."""

    gateway: GatewayRef
    cases: tuple[ExpectedResponse, ...]
    scheme: str = "http"
    server_cert: NN | None = None
    use_port: bool = True
    expect_failure: bool = False
    note: str = ""


@dataclass(frozen=True)
class GatewayGRPCExchanges:
    """grpc.MakeRequestAndExpectEventuallyConsistentResponse per case: a gRPC call of the
    suite's echo service (`method`: EchoService's Echo, EchoTwo or EchoThree) to the address
    of `gateway`, with `authority` and `metadata`; answered by `backend` in `namespace`, or
    failing with the gRPC status `code` (0 = OK)."""

    gateway: GatewayRef
    cases: tuple[GRPCCase, ...]


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
class TLSPassthrough:
    """tls.MakeTLSRequestAndExpectEventuallyConsistentResponse through a TLS passthrough
    listener: an https request with SNI `server_name` (the Host too), trusting the Secret
    `server_cert`'s certificate, answered by `backend`; `status` 0 with `expect_failure` means
    the handshake must fail (MakeTLSRequestAndExpectFailure)."""

    gateway: GatewayRef
    server_name: str
    server_cert: NN
    backend: str = ""
    namespace: str = INFRA_NAMESPACE
    path: str = "/"
    expect_failure: bool = False


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
        | ObservedGenerationBumped | Apply | Update | Delete | Create | GatewayExchanges
        | GatewayGRPCExchanges | GatewayWeighted | TLSPassthrough | Never | Subtest)


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
