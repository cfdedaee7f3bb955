"""The runners' loopback ranges (nets.py): the default ones, and the override."""

from __future__ import annotations

import pytest

from tests.conformance.gateway_api.nets import DEFAULT_BASE, ENV_VAR, Nets, nets_from


def test_default_ranges_are_127_61_to_127_64() -> None:
    nets = nets_from({})
    assert nets.base == DEFAULT_BASE
    assert nets.mesh == {"pointsman": "127.61", "envoy": "127.62"}
    assert (nets.pods, nets.gateways) == ("127.63", "127.64")


def test_base_moves_every_range() -> None:
    nets = nets_from({ENV_VAR: "170"})
    assert nets.mesh == {"pointsman": "127.170", "envoy": "127.171"}
    assert (nets.pods, nets.gateways) == ("127.172", "127.173")


def test_empty_value_keeps_the_default() -> None:
    assert nets_from({ENV_VAR: " "}) == Nets(DEFAULT_BASE)


@pytest.mark.parametrize("raw", ["abc", "0", "253", "127.170"])
def test_bad_base_is_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(ValueError, match=ENV_VAR):
        nets_from({ENV_VAR: raw})
