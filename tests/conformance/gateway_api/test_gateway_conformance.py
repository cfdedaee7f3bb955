"""The Gateway API conformance suite's gateway profiles (GATEWAY-HTTP, GATEWAY-TLS and
GATEWAY-GRPC, core and extended): every translated test whose features we claim, in the order
run_report plays them, run end to end (gateway_runner.py): one control plane, the base
manifests' backends (echo servers behind `pointsman sidecar --workload`) and the Gateways'
proxies (`pointsman sidecar --gateway`, started on first use) shared by every test, as the Go
suite shares its base manifests; each test applies its manifests with `pointsman apply`, checks
status with `pointsman get -o json`, sends its requests to the Gateway and deletes its
manifests. About 140 s on a quiet 2-core machine.

A test naming an extended feature we do not claim (gateway_runner.UNSUPPORTED_FEATURES) is not
collected, as the suite skips it (run_report lists it as not run, with the reason; a skip would
fail `.ci/run`, where skips are failures). A test in gateway_runner.KNOWN_GAPS (none today) may
fail for the reason recorded there: it is then skipped with that reason.

`python -m tests.conformance.gateway_api.run_report` plays the same tests (and the mesh ones)
and writes the report in docs/conformance/.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conformance.gateway_api.gateway_runner import GatewayHarness, unsupported
from tests.conformance.gateway_api.gateway_steps import GatewayConformanceTest
from tests.conformance.gateway_api.run_report import GATEWAY_TESTS

pytestmark = [pytest.mark.conformance, pytest.mark.slow]

CLAIMED = [test for test in GATEWAY_TESTS if unsupported(test) is None]


@pytest.fixture(scope="module")
def harness() -> Iterator[GatewayHarness]:
    with GatewayHarness() as started:
        yield started


@pytest.mark.parametrize("test", CLAIMED, ids=[test.short_name for test in CLAIMED])
def test_gateway(harness: GatewayHarness, test: GatewayConformanceTest) -> None:
    outcome = harness.run(test)
    if outcome.result == "skipped":
        pytest.skip(outcome.reason)
    assert outcome.result == "passed", f"{test.short_name}: {outcome.reason}"
