"""GatewayStaticAddresses' pieces that need no processes: the suite's address placeholders,
the test's patches and its final status check (conformance/tests/gateway-static-addresses.go
and conformance/utils/kubernetes/apply.go at the commit in upstream/UPSTREAM).

The Go suite fills `PLACEHOLDER_USABLE_ADDRS` / `PLACEHOLDER_UNUSABLE_ADDRS` from its
--usable-network-addresses / --unusable-network-addresses flags. Here the usable one is a
loopback address of the Gateway proxies' range (nets.py) that the Gateway's proxy can bind,
and the unusable one is from TEST-NET-1 (192.0.2.0/24, RFC 5737: documentation only, never
assigned to a host), so binding it fails with EADDRNOTAVAIL and the model reports
Programmed=False/AddressNotUsable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tests.conformance.gateway_api.nets import NETS

USABLE = "PLACEHOLDER_USABLE_ADDRS"
UNUSABLE = "PLACEHOLDER_UNUSABLE_ADDRS"
SPECIAL_TYPE = "test/fake-invalid-type"  # kept as it is (apply.go "specialAddrs")
# the last /24 of the Gateway proxies' range: the proxies count up from .1 (gateway_runner)
USABLE_ADDRESSES = ({"type": "IPAddress", "value": f"{NETS.gateways}.250.1"},)
UNUSABLE_ADDRESSES = ({"type": "IPAddress", "value": "192.0.2.1"},)


def overlay_addresses(gateway: dict[str, Any]) -> bool:
    """Applier.prepareGateway: when spec.addresses names a placeholder, they become the
    special addresses, then the unusable ones, then the usable ones (in that order).
    True when the Gateway got the usable addresses (its proxy binds them)."""
    addresses = gateway.get("spec", {}).get("addresses") or []
    values = {item.get("value") for item in addresses}
    if not values & {USABLE, UNUSABLE}:
        return False
    special = [item for item in addresses if item.get("type") == SPECIAL_TYPE]
    gateway["spec"]["addresses"] = [
        *special, *(dict(item) for item in UNUSABLE_ADDRESSES if UNUSABLE in values),
        *(dict(item) for item in USABLE_ADDRESSES if USABLE in values)]
    return USABLE in values


def without(addresses: Sequence[dict[str, Any]], original: Sequence[dict[str, Any]],
            change: str) -> list[dict[str, Any]]:
    """filterAddr for each index `change` names ("without [0] and [1]"): the addresses whose
    value is not that of the original spec.addresses entry at the index."""
    dropped = {original[int(index)].get("value") for index in re.findall(r"\[(\d+)\]", change)}
    return [dict(item) for item in addresses if item.get("value") not in dropped]


def status_addresses_mismatch(status: Sequence[dict[str, Any]],
                              original: Sequence[dict[str, Any]], count: int,
                              present: Sequence[int], absent: Sequence[int]) -> str | None:
    """The test's end: exactly `count` status addresses, holding the values (and types) of the
    original spec entries in `present` and none of those in `absent`."""
    if len(status) != count:
        return f"expected {count} status addresses, got {list(status)}"
    types = {item.get("value"): item.get("type", "IPAddress") for item in status}
    for index in present:
        wanted = original[index]
        value = wanted.get("value")
        if value not in types:
            return f"status.addresses lacks {value!r}: {list(status)}"
        if types[value] != wanted.get("type", "IPAddress"):
            return f"status address {value!r} has type {types[value]!r}"
    for index in absent:
        if original[index].get("value") in types:
            return f"status.addresses holds {original[index].get('value')!r}"
    return None
