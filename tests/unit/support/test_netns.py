"""tests/support/netns.py's choices, without creating anything: which /30 and names a test
namespace gets (from the PID, passing over what this host already has), what `ip -j` output
says is taken, and the skips (not root, no `ip`)."""

from __future__ import annotations

import ipaddress

import pytest

from tests.support import netns
from tests.support.netns import Plan, Taken, choose, plan_for, taken_from


def network(text: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(text)


def test_a_slot_is_a_private_slash_30_with_names_that_fit_an_interface() -> None:
    plan = plan_for(117 * 64 + 3)
    assert plan == Plan(name="pointsman-117-3", host_link="pm117-3h", namespace_link="pm117-3n",
                        subnet=network("10.254.117.12/30"))
    assert (plan.host_address, plan.address) == ("10.254.117.13", "10.254.117.14")
    for slot in range(netns.SLOTS):
        plan = plan_for(slot)
        assert plan.subnet.is_private and plan.subnet.subnet_of(netns.SPACE)
        assert max(len(plan.host_link), len(plan.namespace_link)) <= 15  # IFNAMSIZ - 1
    assert len({plan_for(slot).subnet for slot in range(netns.SLOTS)}) == netns.SLOTS


def test_the_pid_picks_the_first_slash_24_tried() -> None:
    assert choose(117, Taken()).subnet == network("10.254.117.0/30")
    assert choose(117 + 256, Taken()).subnet == network("10.254.117.0/30")
    assert choose(4_194_303, Taken()).subnet == network("10.254.255.0/30")


@pytest.mark.parametrize("taken", [
    Taken(names=frozenset({"pointsman-117-0"})),  # a leftover namespace
    Taken(links=frozenset({"pm117-0h"})),  # a leftover veth end
    Taken(links=frozenset({"pm117-0n"})),
    Taken(networks=frozenset({network("10.254.117.1/32")})),  # an address in it
    Taken(networks=frozenset({network("10.254.117.0/30")})),  # a route to it
    Taken(networks=frozenset({network("10.254.117.2/31")})),
])
def test_what_this_host_has_is_passed_over(taken: Taken) -> None:
    assert choose(117, taken).subnet == network("10.254.117.4/30")


def test_a_broader_route_does_not_take_a_slash_30() -> None:
    """The /30's own connected route is more specific (longest prefix wins)."""
    broad = Taken(networks=frozenset({network("10.0.0.0/8"), network("10.254.0.0/16")}))
    assert choose(117, broad).subnet == network("10.254.117.0/30")


def test_past_the_last_slot_it_wraps_and_when_all_are_taken_it_says_so() -> None:
    last = Taken(names=frozenset(f"pointsman-255-{index}" for index in range(64)))
    assert choose(255, last).subnet == network("10.254.0.0/30")
    everything = Taken(names=frozenset(plan_for(slot).name for slot in range(netns.SLOTS)))
    with pytest.raises(RuntimeError, match=r"no free /30 left in 10\.254\.0\.0/16"):
        choose(1, everything)


def test_taken_from_ip_json() -> None:
    addresses = [
        {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8},
                                       {"family": "inet6", "local": "::1", "prefixlen": 128}]},
        {"ifname": "pm3-0h", "addr_info": [{"family": "inet", "local": "10.254.3.1",
                                            "prefixlen": 30}]},
        {"ifname": "ifb0", "addr_info": []},
    ]
    routes = [{"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
              {"dst": "192.0.2.0/24", "dev": "eth0"},
              {"type": "local", "dst": "127.0.0.1", "dev": "lo", "table": "local"}]
    taken = taken_from(addresses, routes, [{"name": "pointsman-3-1", "id": 0}])
    assert taken == Taken(
        names=frozenset({"pointsman-3-1"}), links=frozenset({"lo", "pm3-0h", "ifb0"}),
        networks=frozenset({network("127.0.0.1/32"), network("10.254.3.1/32"),
                            network("192.0.2.0/24")}))
    assert choose(3, taken).subnet == network("10.254.3.8/30")  # 3-0 in use, 3-1's name
    assert choose(3, Taken(networks=taken.networks)).name == "pointsman-3-1"
    assert choose(3, Taken(names=taken.names)).name == "pointsman-3-0"


def test_without_root_or_ip_it_skips_saying_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        netns.ip_binary()
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns.shutil, "which", lambda name: None)
    monkeypatch.setattr(netns.os, "access", lambda path, mode: False)
    with pytest.raises(pytest.skip.Exception, match=r"needs `ip` \(iproute2\)"):
        netns.ip_binary()
