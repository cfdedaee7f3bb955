"""A test network namespace (tests/support/netns.py) for real: this host reaches a server on
the namespace's address over the veth pair, and not one on the namespace's loopback; a process
started in it keeps its PID (`ip netns exec` execs); two at once get different /30s; teardown
stops what was started in it, then anything else left in it, and leaves neither the namespace
nor a veth end behind."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.netns import NetworkNamespace, network_namespace  # noqa: F401 (fixture)
from tests.support.ports import wait_for_port

SERVE = "import socket,sys,time; s=socket.create_server((sys.argv[1], 8080)); time.sleep(60)"


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture
def second() -> Iterator[NetworkNamespace]:
    with NetworkNamespace.create() as namespace:
        yield namespace


def test_this_host_reaches_the_namespace_address_only(
        network_namespace: NetworkNamespace) -> None:  # noqa: F811 (the fixture)
    namespace = network_namespace
    outside = namespace.start([sys.executable, "-c", SERVE, namespace.address], name="outside")
    inside = namespace.start([sys.executable, "-c", SERVE, "127.0.0.1"], name="inside")
    wait_for_port(8080, host=namespace.address)
    assert outside.pid in namespace.pids() and inside.pid in namespace.pids()
    assert not reachable("127.0.0.1", 8080)  # this host's loopback is not the namespace's
    in_view = subprocess.run(
        namespace.argv([sys.executable, "-c", "import socket; socket.create_connection("
                                              "('127.0.0.1', 8080), timeout=2).close()"]),
        check=False)
    assert in_view.returncode == 0


def test_two_at_once_differ_and_teardown_leaves_nothing(second: NetworkNamespace) -> None:
    with NetworkNamespace.create() as first:
        assert first.plan.subnet != second.plan.subnet and first.name != second.name
        started = first.start(["sleep", "60"], name="sleeper")
        stray = subprocess.Popen(first.argv(["sleep", "60"]))  # not adopted: still killed
        started.wait_until(lambda: {started.pid, stray.pid} <= set(first.pids()), 10,
                           "in the namespace")  # once `ip` has entered it
    assert not started.alive()
    assert stray.wait(5) != 0
    assert first.name not in ip("netns", "list")
    assert first.plan.host_link not in ip("-br", "link")
    assert second.name in ip("netns", "list") and reachable_link(second)


def reachable_link(namespace: NetworkNamespace) -> bool:
    return f"{namespace.plan.host_address}/30" in ip("-br", "address", "show",
                                                     namespace.plan.host_link)
