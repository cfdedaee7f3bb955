"""GatewayStaticAddresses' pieces (gateway_addresses.py): the placeholders filled as apply.go
fills them, the test's patches and its status check, on the suite's own manifest."""

from __future__ import annotations

import ipaddress

from tests.conformance.gateway_api.gateway_addresses import (
    UNUSABLE_ADDRESSES,
    USABLE_ADDRESSES,
    status_addresses_mismatch,
    without,
)
from tests.conformance.gateway_api.gateway_runner import UPSTREAM, applicable, static_gateways
from tests.conformance.gateway_api.nets import NETS
from tests.conformance.gateway_api.status import NN

MANIFEST = UPSTREAM / "tests" / "gateway-static-addresses.yaml"


def _addresses() -> list[dict[str, str]]:
    documents, _ = applicable(MANIFEST.read_text())
    gateway = next(item for item in documents if item["kind"] == "Gateway")
    return list(gateway["spec"]["addresses"])


def test_placeholders_become_special_then_unusable_then_usable() -> None:
    """Applier.prepareGateway's order; the invalid type is kept as it is."""
    assert _addresses() == [{"type": "test/fake-invalid-type", "value": "fake address teehee!"},
                            *UNUSABLE_ADDRESSES, *USABLE_ADDRESSES]


def test_usable_is_a_proxy_loopback_and_unusable_is_test_net_1() -> None:
    usable = ipaddress.ip_address(USABLE_ADDRESSES[0]["value"])
    assert usable.is_loopback and str(usable).startswith(NETS.gateways + ".")
    unusable = ipaddress.ip_address(UNUSABLE_ADDRESSES[0]["value"])
    assert unusable in ipaddress.ip_network("192.0.2.0/24")  # RFC 5737 TEST-NET-1


def test_only_the_gateway_with_usable_addresses_gets_a_static_proxy() -> None:
    documents, _ = applicable(MANIFEST.read_text())
    assert static_gateways(documents) == [NN("gateway-static-addresses",
                                             "gateway-conformance-infra")]
    plain = [{"kind": "Gateway", "metadata": {"name": "g"}, "spec": {"listeners": []}}]
    assert static_gateways(plain) == []


def test_patches_drop_the_original_entries_they_name() -> None:
    original = _addresses()
    first = without(original, original, "without [0]")
    assert first == original[1:]
    assert without(first, original, "without [0] and [1]") == original[2:]


def test_status_must_hold_exactly_the_usable_address() -> None:
    original = _addresses()
    usable = dict(original[2])
    assert status_addresses_mismatch([usable], original, 1, (2,), (0, 1)) is None
    assert status_addresses_mismatch([original[1], usable], original, 1, (2,), (0, 1))
    assert status_addresses_mismatch([original[1]], original, 1, (2,), (0,))
    assert status_addresses_mismatch([{**usable, "type": "Hostname"}], original, 1, (2,), ())
