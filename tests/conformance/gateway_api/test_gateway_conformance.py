"""The Gateway API conformance suite's GATEWAY-HTTP core tests and one GATEWAY-GRPC core test
(GRPCExactMethodMatching: a GRPCRoute to gRPC backends, UNIMPLEMENTED passed through), run end
to end (gateway_runner.py): one control plane, the base manifests' backends (echo servers behind
`pointsman sidecar --workload`) and the Gateways' proxies (`pointsman sidecar --gateway`,
started on first use) shared by every test, as the Go suite shares its base manifests; each
test applies its manifests with `pointsman apply`, checks status with `pointsman get -o json`,
sends its requests to the Gateway and deletes its manifests. The other GATEWAY-GRPC tests, the
extended tests and GATEWAY-TLS run only from run_report (what `make test` can give these is
about 90 s; the whole takes about 280 s).

A test in gateway_runner.KNOWN_GAPS may fail for the reason recorded there (our loader refuses
what the suite expects stored with a failure status): it is then skipped with that reason.

`python -m tests.conformance.gateway_api.run_report` runs these and the extended, GATEWAY-GRPC
and GATEWAY-TLS tests, and writes the report.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conformance.gateway_api.gateway_runner import (
    GRPC_BACKENDS,
    HTTP_BACKENDS,
    GatewayHarness,
    core_tests,
)
from tests.conformance.gateway_api.gateway_steps import GatewayConformanceTest
from tests.conformance.gateway_api.mesh_suite import GATEWAY_GRPC, GATEWAY_HTTP

pytestmark = [pytest.mark.conformance, pytest.mark.slow]

CORE = core_tests(GATEWAY_HTTP) + [
    test for test in core_tests(GATEWAY_GRPC) if test.short_name == "GRPCExactMethodMatching"]


@pytest.fixture(scope="module")
def harness() -> Iterator[GatewayHarness]:
    with GatewayHarness(backends=HTTP_BACKENDS + GRPC_BACKENDS[:2]) as started:
        yield started


@pytest.mark.parametrize("test", CORE, ids=[test.short_name for test in CORE])
def test_gateway_core(harness: GatewayHarness, test: GatewayConformanceTest) -> None:
    outcome = harness.run(test)
    if outcome.result == "skipped":
        pytest.skip(outcome.reason)
    assert outcome.result == "passed", f"{test.short_name}: {outcome.reason}"
