"""Differential: envoy.filters.http.fault, Envoy 1.40 vs `pointsman proxy`.

Four listeners, each with a fault filter: header-controlled delays and aborts (HTTP and gRPC
statuses, percentages, invalid values, x-envoy-downstream-service-cluster stats), fixed faults
narrowed by `headers` and `upstream_cluster` and replaced per route (typed_per_filter_config on
a route and a virtual host), `max_active_faults` under two concurrent delayed requests, and
`response_rate_limit`. Both answer alike (status, body, gRPC status), delay alike (measured
classes, with generous margins), log the same %RESPONSE_FLAGS% and %RESPONSE_CODE_DETAILS%, and
count the same `http.<stat_prefix>.fault.*` stats.
"""

from __future__ import annotations

import http.client
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.bootstraps import ROUTER, http_bootstrap, static_cluster
from tests.support.envoy import Envoy
from tests.support.http_backends import EchoBackend
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance

FAULT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
ALL = {"numerator": 100}
LOG_FORMAT = "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%\n"


def _fault(**fields: Any) -> dict[str, Any]:
    return {"@type": FAULT_TYPE, **fields}


FILTERS: dict[str, dict[str, Any]] = {
    "hdr": _fault(delay={"header_delay": {}, "percentage": ALL},
                  abort={"header_abort": {}, "percentage": ALL}),
    "fixed": _fault(abort={"http_status": 418, "percentage": ALL}, upstream_cluster="app",
                    headers=[{"name": "x-fault", "string_match": {"exact": "yes"}}]),
    "limited": _fault(delay={"fixed_delay": "1s", "percentage": ALL}, max_active_faults=1),
    "throttle": _fault(response_rate_limit={"header_limit": {}, "percentage": ALL}),
}


def _listener(name: str, port: int, log: Path) -> dict[str, Any]:
    routes: list[dict[str, Any]] = [{"match": {"prefix": "/"}, "route": {"cluster": "app"}}]
    if name == "fixed":
        routes = [
            {"match": {"prefix": "/override"}, "route": {"cluster": "app"},
             "typed_per_filter_config": {"fault": _fault(
                 abort={"grpc_status": 8, "percentage": ALL})}},
            {"match": {"prefix": "/other"}, "route": {"cluster": "other"}},
            *routes]
    config = http_bootstrap(
        port, routes, [], stat_prefix=name,
        http_filters=[{"name": "fault", "typed_config": FILTERS[name]}, ROUTER],
        access_log=[{"name": "log", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": str(log), "log_format": {"text_format_source": {
                "inline_string": LOG_FORMAT}}}}])
    listener: dict[str, Any] = config["static_resources"]["listeners"][0]
    if name == "fixed":  # a virtual host whose per-route config switches the faults off
        route_config = listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
        route_config["virtual_hosts"].insert(0, {
            "name": "calm", "domains": ["calm.test"],
            "typed_per_filter_config": {"fault": _fault()},
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "app"}}]})
    return listener


def bootstrap(ports: dict[str, int], backend: int, log: Path) -> dict[str, Any]:
    return {"static_resources": {
        "listeners": [_listener(name, ports[name], log) for name in FILTERS],
        "clusters": [static_cluster("app", [backend]), static_cluster("other", [backend])]}}


Request = tuple[str, str, str, tuple[tuple[str, str], ...]]
GRPC = (("content-type", "application/grpc"), ("te", "trailers"))
CLIENT = (("x-envoy-downstream-service-cluster", "client"),)
REQUESTS: list[Request] = [
    ("hdr", "/plain", "a.test", ()),
    ("hdr", "/abort", "a.test", (("x-envoy-fault-abort-request", "503"),)),
    ("hdr", "/abort-700", "a.test", (("x-envoy-fault-abort-request", "700"),)),
    ("hdr", "/abort-junk", "a.test", (("x-envoy-fault-abort-request", "5x3"),)),
    ("hdr", "/abort-0pct", "a.test", (("x-envoy-fault-abort-request", "503"),
                                      ("x-envoy-fault-abort-request-percentage", "0"))),
    ("hdr", "/grpc-on-http", "a.test", (("x-envoy-fault-abort-grpc-request", "14"),)),
    ("hdr", "/grpc", "a.test", (*GRPC, ("x-envoy-fault-abort-grpc-request", "5"))),
    ("hdr", "/grpc-http-wins", "a.test", (*GRPC, ("x-envoy-fault-abort-request", "429"),
                                          ("x-envoy-fault-abort-grpc-request", "5"))),
    ("hdr", "/delay", "a.test", (("x-envoy-fault-delay-request", "300"), *CLIENT)),
    ("hdr", "/delay-0pct", "a.test", (("x-envoy-fault-delay-request", "300"),
                                      ("x-envoy-fault-delay-request-percentage", "0"))),
    ("hdr", "/delay-abort", "a.test", (("x-envoy-fault-delay-request", "200"),
                                       ("x-envoy-fault-abort-request", "429"), *CLIENT)),
    ("fixed", "/no-header", "a.test", ()),
    ("fixed", "/fixed-abort", "a.test", (("x-fault", "yes"),)),
    ("fixed", "/other", "a.test", (("x-fault", "yes"),)),  # another upstream cluster
    ("fixed", "/override", "a.test", (("x-fault", "yes"),)),  # the route's own faults
    ("fixed", "/calm", "calm.test", (("x-fault", "yes"),)),  # the virtual host's: none
    ("throttle", "/not-throttled", "a.test", (("x-echo-size", "1000"),)),
]


def exchange(ports: dict[str, int], request: Request) -> tuple[Any, ...]:
    """(status, gRPC status, body or its size, elapsed class): under 0.15 s, a delay of the
    0.2-0.3 s sort, or a second or more."""
    listener, path, host, headers = request
    connection = http.client.HTTPConnection("127.0.0.1", ports[listener], timeout=20)
    started = time.monotonic()
    try:
        connection.request("GET", path, headers={"Host": host, **dict(headers)})
        response = connection.getresponse()
        body = response.read()
        elapsed = time.monotonic() - started
        shown = body.decode() if response.getheader("x-backend") is None else len(body)
        return response.status, response.getheader("grpc-status"), \
            response.getheader("grpc-message"), shown, _elapsed_class(elapsed)
    finally:
        connection.close()


def _elapsed_class(seconds: float) -> str:
    if seconds < 0.15:
        return "now"
    return "delayed" if seconds < 1.0 else "a second"


def _concurrent_delays(port: int) -> list[str]:
    """Two requests at once on `limited` (1 s delays, one active fault at most)."""
    classes: list[str] = []

    def one(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        started = time.monotonic()
        connection.request("GET", f"/concurrent/{index}", headers={"Host": "a.test"})
        connection.getresponse().read()
        # The limit shows as one request delayed 1 s and one not delayed: split at 0.7 s
        # rather than at _elapsed_class's 0.15 s, which a loaded machine can exceed.
        classes.append("a second" if time.monotonic() - started >= 0.7 else "now")
        connection.close()

    first = threading.Thread(target=one, args=(0,))
    first.start()
    time.sleep(0.3)  # the first holds the active fault by now
    one(1)
    first.join()
    return sorted(classes)


def _throttled(port: int) -> tuple[int, float]:
    """96 KiB at 64 KiB/s (x-envoy-fault-throughput-response): its size and how long it took."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    started = time.monotonic()
    try:
        connection.request("GET", "/throttled", headers={
            "Host": "a.test", "x-echo-size": str(96 * 1024),
            "x-envoy-fault-throughput-response": "64"})
        body = connection.getresponse().read()
        return len(body), time.monotonic() - started
    finally:
        connection.close()


STATS = [f"http.{name}.fault.{stat}" for name in FILTERS
         for stat in ("delays_injected", "aborts_injected", "faults_overflow",
                      "response_rl_injected", "active_faults")] + [
    "http.hdr.fault.client.delays_injected", "http.hdr.fault.client.aborts_injected"]


def _run(kind: type[Envoy] | type[Pointsman], backend: int) -> dict[str, Any]:
    ports = {name: free_port() for name in FILTERS}
    log = Path(tempfile.mkdtemp(prefix="fault-")) / "access.log"
    proxy = kind(bootstrap(ports, backend, log), name=f"{kind.__name__}-fault")
    try:
        proxy.wait_ready()
        answers = [exchange(ports, request) for request in REQUESTS]
        concurrent = _concurrent_delays(ports["limited"])
        throttled = _throttled(ports["throttle"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(_log(log)) < len(REQUESTS) + 3:
            time.sleep(0.1)
        return {"answers": answers, "concurrent": concurrent, "throttled": throttled,
                "log": _log(log), "stats": [proxy.stat(name) for name in STATS]}
    finally:
        proxy.stop()


def _log(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    lines = path.read_text().splitlines()
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in lines if " " in line}


@pytest.fixture(scope="module")
def observed() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    with EchoBackend("app") as backend:
        yield _run(Envoy, backend.port), _run(Pointsman, backend.port)


@pytest.mark.parametrize("index", range(len(REQUESTS)),
                         ids=[f"{listener}{path}" for listener, path, _, _ in REQUESTS])
def test_fault_answers_like_envoy(index: int,
                                  observed: tuple[dict[str, Any], dict[str, Any]]) -> None:
    envoy, ours = observed
    assert ours["answers"][index] == envoy["answers"][index]
    path = REQUESTS[index][1]
    assert ours["log"].get(path) == envoy["log"].get(path)


def test_reference_behaviour(observed: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """What Envoy 1.40 does, so that a change on both sides cannot pass unseen."""
    envoy, _ours = observed
    answers = dict(zip([path for _, path, _, _ in REQUESTS], envoy["answers"], strict=True))
    assert answers["/abort"][:4] == (503, None, None, "fault filter abort")
    assert answers["/delay-abort"] == (429, None, None, "fault filter abort", "delayed")
    assert envoy["log"]["/delay-abort"] == "429 DI,FI fault_filter_abort"
    assert answers["/grpc"][:3] == (200, "5", "fault filter abort")


def test_max_active_faults_like_envoy(observed: tuple[dict[str, Any], dict[str, Any]]) -> None:
    envoy, ours = observed
    assert envoy["concurrent"] == ["a second", "now"]
    assert ours["concurrent"] == envoy["concurrent"]


def test_response_rate_limit_like_envoy(
        observed: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """96 KiB at 64 KiB/s, 3.2 KiB of it at once: about 1.45 s (no faster, and the margin
    above is for a loaded machine)."""
    envoy, ours = observed
    for size, seconds in (envoy["throttled"], ours["throttled"]):
        assert size == 96 * 1024
        assert 1.3 < seconds < 3.5


def test_fault_stats_like_envoy(observed: tuple[dict[str, Any], dict[str, Any]]) -> None:
    envoy, ours = observed
    assert dict(zip(STATS, ours["stats"], strict=True)) == \
        dict(zip(STATS, envoy["stats"], strict=True))
