"""A network namespace of the test's own, joined to this host by a veth pair, for tests that
need an address that is not loopback (a second "host") while sending traffic only to loopback
or into a namespace the test created (the project guide's rule for `ip netns`).

    with NetworkNamespace.create() as namespace:       # skips unless root with `ip`
        server = namespace.start(argv, name="server")  # `ip netns exec NAME argv...`
        connect(namespace.address, port)               # from this host, over the veth pair

The pair gets a private /30 (RFC 1918) in 10.254.0.0/16: this host's end is its first address,
the namespace's end its second. The first /30 tried is picked by the PID (10.254.X.*, X the PID
modulo 256), and any /30 whose name, interface or addresses this host already has (a parallel
run, or one killed before its teardown) is passed over. `ip` (iproute2) does the work:
ip-netns(8), ip-link(8) `type veth`, ip-address(8). Teardown always runs: the processes started
in the namespace are stopped by PID (then whatever else is left in it, `ip netns pids`), the
veth pair is deleted (both ends go together), then the namespace.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.processes import ManagedProcess

SPACE = ipaddress.IPv4Network("10.254.0.0/16")
SLOTS = SPACE.num_addresses // 4  # /30s in SPACE
SUBNETS_PER_OCTET = 64  # /30s in a 10.254.X.0/24


@dataclass(frozen=True)
class Plan:
    """What one namespace is called and addressed by."""

    name: str  # ip netns name
    host_link: str  # this host's end of the veth pair (IFNAMSIZ: at most 15 characters)
    namespace_link: str  # the end moved into the namespace
    subnet: ipaddress.IPv4Network  # a /30

    @property
    def host_address(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def address(self) -> str:
        """The namespace's end: not loopback from the namespace's own view."""
        return str(self.subnet.network_address + 2)


@dataclass(frozen=True)
class Taken:
    """What this host already has: namespace names, interface names, IPv4 networks in use
    (its addresses and its routes)."""

    names: frozenset[str] = frozenset()
    links: frozenset[str] = frozenset()
    networks: frozenset[ipaddress.IPv4Network] = frozenset()

    def clashes(self, plan: Plan) -> bool:
        return (plan.name in self.names or plan.host_link in self.links
                or plan.namespace_link in self.links
                or any(plan.subnet.overlaps(network) and network.prefixlen >= plan.subnet.prefixlen
                       for network in self.networks))


def plan_for(slot: int) -> Plan:
    """The `slot`-th /30 of SPACE and the names that go with it."""
    octet, index = divmod(slot % SLOTS, SUBNETS_PER_OCTET)
    subnet = ipaddress.IPv4Network((int(SPACE.network_address) + slot % SLOTS * 4, 30))
    tag = f"{octet}-{index}"
    return Plan(name=f"pointsman-{tag}", host_link=f"pm{tag}h", namespace_link=f"pm{tag}n",
                subnet=subnet)


def choose(pid: int, taken: Taken) -> Plan:
    """The first /30 from the PID's own 10.254.(PID % 256).0/24 on that `taken` does not hold."""
    first = pid % 256 * SUBNETS_PER_OCTET
    for step in range(SLOTS):
        plan = plan_for(first + step)
        if not taken.clashes(plan):
            return plan
    raise RuntimeError(f"no free /30 left in {SPACE} for a test network namespace")


def taken_from(addresses: Iterable[dict[str, Any]], routes: Iterable[dict[str, Any]],
               namespaces: Iterable[dict[str, Any]]) -> Taken:
    """From `ip -j address`, `ip -j -4 route show table all` and `ip -j netns list`."""
    links, networks = set(), set()
    for link in addresses:
        links.add(str(link["ifname"]))
        for item in link.get("addr_info", []):
            if item.get("family") == "inet":
                networks.add(ipaddress.IPv4Network(f"{item['local']}/32"))
    for route in routes:
        destination = str(route.get("dst", "default"))
        if destination != "default":
            networks.add(ipaddress.IPv4Network(destination, strict=False))
    return Taken(names=frozenset(str(item["name"]) for item in namespaces),
                 links=frozenset(links), networks=frozenset(networks))


def ip_binary() -> str:
    """The path of `ip`, or a skip saying what is missing (root, or iproute2)."""
    if os.geteuid() != 0:
        pytest.skip("a network namespace of the test's own needs root (ip netns); CI runs "
                    "as root")
    found = shutil.which("ip") or next(
        (path for path in ("/usr/sbin/ip", "/sbin/ip") if os.access(path, os.X_OK)), None)
    if found is None:
        pytest.skip("a network namespace of the test's own needs `ip` (iproute2), not found")
    return found


class NetworkNamespace:
    """One namespace and its veth pair; a context manager whose exit tears both down."""

    def __init__(self, ip: str, plan: Plan) -> None:
        self.ip = ip
        self.plan = plan
        self.processes: list[ManagedProcess] = []

    @classmethod
    def create(cls) -> NetworkNamespace:
        """Plan, then create; a /30 another run took in between is passed over (3 tries)."""
        ip = ip_binary()
        for _ in range(3):
            namespace = cls(ip, choose(os.getpid(), current(ip)))
            if namespace.set_up():
                return namespace
        raise RuntimeError("could not create a test network namespace: the /30 picked was "
                           "taken meanwhile, 3 times")

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def address(self) -> str:
        return self.plan.address

    def set_up(self) -> bool:
        """False when the name or a link was taken meanwhile; raises on any other failure."""
        plan, ip = self.plan, self.ip
        if not run(ip, "netns", "add", plan.name, taken_ok=True):
            return False
        try:
            if not run(ip, "link", "add", plan.host_link, "type", "veth", "peer", "name",
                       plan.namespace_link, "netns", plan.name, taken_ok=True):
                run(ip, "netns", "del", plan.name)
                return False
            run(ip, "address", "add", f"{plan.host_address}/30", "dev", plan.host_link)
            run(ip, "link", "set", plan.host_link, "up")
            run(ip, "-n", plan.name, "address", "add", f"{plan.address}/30", "dev",
                plan.namespace_link)
            run(ip, "-n", plan.name, "link", "set", plan.namespace_link, "up")
            run(ip, "-n", plan.name, "link", "set", "lo", "up")
        except BaseException:
            self.tear_down()
            raise
        return True

    def argv(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the namespace. `ip netns exec` execs it (no fork), so the PID
        Popen returns is the program's own."""
        return [self.ip, "netns", "exec", self.name, *argv]

    def start(self, argv: Sequence[str], *, name: str, **options: Any) -> ManagedProcess:
        """A ManagedProcess inside the namespace, stopped at teardown at the latest."""
        return self.adopt(ManagedProcess(self.argv(argv), name=name, **options))

    def adopt(self, process: ManagedProcess) -> ManagedProcess:
        """Stop `process` (started with `argv`) at teardown if it still runs."""
        self.processes.append(process)
        return process

    def tear_down(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.kill_leftovers()
        run(self.ip, "link", "del", self.plan.host_link, missing_ok=True)
        run(self.ip, "netns", "del", self.name, missing_ok=True)

    def kill_leftovers(self, timeout: float = 5.0) -> None:
        """Anything else still in the namespace (started in it by this test: nothing else can
        enter it) is killed by PID, and awaited: a namespace lives on while a process is in it."""
        deadline = time.monotonic() + timeout
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):  # gone meanwhile
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    def pids(self) -> list[int]:
        done = subprocess.run([self.ip, "netns", "pids", self.name], capture_output=True,
                              text=True, check=False)
        return [int(pid) for pid in done.stdout.split()]

    def __enter__(self) -> NetworkNamespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.tear_down()

    def __repr__(self) -> str:
        return (f"NetworkNamespace({self.name}, {self.plan.host_link}={self.plan.host_address}"
                f" <-> {self.plan.namespace_link}={self.address})")


def current(ip: str) -> Taken:
    """What this host has now (`ip -j`)."""
    def listed(*args: str) -> list[dict[str, Any]]:
        out = subprocess.run([ip, "-j", *args], capture_output=True, text=True,
                             check=True).stdout
        return list(json.loads(out)) if out.strip() else []  # `netns list` prints nothing
    return taken_from(listed("address"), listed("-4", "route", "show", "table", "all"),
                      listed("netns", "list"))


def run(ip: str, *args: str, taken_ok: bool = False, missing_ok: bool = False) -> bool:
    """`ip ARGS`; False when it failed because the name exists (`taken_ok`) or is gone
    (`missing_ok`); RuntimeError with ip's message on any other failure."""
    done = subprocess.run([ip, *args], capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return True
    message = done.stderr.strip()
    if taken_ok and "exists" in message:
        return False
    if missing_ok and ("Cannot find" in message or "No such" in message
                       or "does not exist" in message):
        return False
    raise RuntimeError(f"ip {' '.join(args)}: {message or done.returncode}")


@pytest.fixture
def network_namespace() -> Iterator[NetworkNamespace]:
    """The fixture form (import it into the test module): one namespace per test."""
    with NetworkNamespace.create() as namespace:
        yield namespace
