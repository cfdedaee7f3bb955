"""Runs the translated mesh tests (mesh_suite.py) against real processes, as the Go suite runs
them against a cluster: a control plane with a file store, the manifests applied with
`pointsman apply`, each Deployment started as workloads (the echo server, echo.py, behind a
`pointsman sidecar --workload NAME --label ...`), and each case sent from the client pod
through its sidecar (by Service name and port, or a pod by its own address) and checked with
expectations.py.

Every pod has its own loopback addresses (instance_ip for its inbound listeners, app_ip for the
echo server, outbound_ip for its outbound listeners, in 127.61.0.0/16; with Envoy sidecars in
127.62.0.0/16, as both harnesses of one test module are alive at once; nets.py moves both), so
the manifests' fixed port numbers (80, 8080, 7070...) never collide with anything else on the
machine; the control plane and the sidecars' admin ports are free ports.

Convergence follows `http.AwaitConvergence`: a case passes once it matched
`REQUIRED_SUCCESSES` times in a row before `timeout` (the suite: 3 in a row, 30 s).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import yaml

from tests.conformance.gateway_api.echo import ready_line
from tests.conformance.gateway_api.expectations import (
    POD_ADDRESS_OF_ECHO_V2,
    WEIGHT_REQUESTS,
    WEIGHT_RETRIES,
    ExpectedResponse,
    Observed,
    mesh_mismatch,
    weights_mismatch,
)
from tests.conformance.gateway_api.mesh_suite import (
    MESH_TESTS,
    ConformanceTest,
    Exchanges,
    Weighted,
)
from tests.conformance.gateway_api.nets import NETS as CONFORMANCE_NETS
from tests.support.meshapi import ApiControlPlane, pointsman
from tests.support.ports import free_port
from tests.support.processes import ManagedProcess, http_get, python_argv

UPSTREAM = Path(__file__).parent / "upstream" / "conformance"
BASE_MANIFESTS = UPSTREAM / "mesh" / "manifests.yaml"
NETS = CONFORMANCE_NETS.mesh  # each flavour's harness its own addresses (nets.py)
REQUIRED_SUCCESSES = 3  # config.DefaultTimeoutConfig RequiredConsecutiveSuccesses
GRPC_METHOD = "/proto.EchoTestService/Echo"  # echo-advanced's (the mesh gRPC client calls it)
ECHO_HTTP_PORTS = (8080,)  # the echo pods' HTTP container port
ECHO_GRPC_PORTS = (7070,)  # ... and gRPC; 8443 (TLS) and 9090 (TCP) are not served (README)


# The features Pointsman does not claim, and why: a test naming one is not run (the suite skips
# it, and it counts in no profile: NOT_SUPPORTED).
UNSUPPORTED_FEATURES = {
    "MeshClusterIPMatching": (
        "a sidecar routes what an application sends to its outbound listener by Host, not by "
        "the destination Service IP: there are no Service IPs to capture traffic for on "
        "loopback (no iptables redirection); a Service's clusterIP is only a Host domain"),
}
SUPPORTED_FEATURES = frozenset(
    feature for test in MESH_TESTS for feature in test.features
    if feature not in UNSUPPORTED_FEATURES)


def unsupported(test: ConformanceTest) -> str | None:
    """Why `test` is not run, or None when every feature it names is supported."""
    missing = [feature for feature in test.features if feature in UNSUPPORTED_FEATURES]
    if not missing:
        return None
    return "; ".join(f"{feature}: {UNSUPPORTED_FEATURES[feature]}" for feature in missing)


@dataclass
class Pod:
    """One replica of a Deployment: its addresses and labels."""

    name: str
    deployment: str
    namespace: str
    labels: dict[str, str]
    instance_ip: str
    app_ip: str
    outbound_ip: str
    admin: int = 0
    sidecar: ManagedProcess | None = None

    def matches(self, selector: str) -> bool:
        """`app=echo,version=v1` (echo.MeshApplication) selects this pod."""
        wanted = dict(item.split("=", 1) for item in selector.split(","))
        return all(self.labels.get(key) == value for key, value in wanted.items())


@dataclass
class Outcome:
    """One test's result: passed, failed (why) or skipped (why)."""

    name: str
    result: str  # "passed" | "failed" | "skipped"
    reason: str = ""


def split_manifests(text: str) -> tuple[str, list[dict[str, Any]]]:
    """The documents to apply, and the Deployments (started as workloads instead: a mesh has
    no pods to schedule)."""
    keep, deployments = [], []
    for document in yaml.safe_load_all(text):
        if not document:
            continue
        if document.get("kind") == "Deployment":
            deployments.append(document)
        else:
            keep.append(document)
    return yaml.safe_dump_all(keep, sort_keys=False), deployments


def pod_name(deployment: str, namespace: str) -> str:
    """A Deployment's pod name has two generated parts (weight.go extractBackendName strips
    them): the ReplicaSet's hash and the pod's suffix, made stable here."""
    digest = hashlib.sha256(f"{namespace}/{deployment}".encode()).hexdigest()
    return f"{deployment}-{digest[:9]}-{digest[9:14]}"


class MeshHarness:
    """The control plane, the base manifests and their workloads; tests apply and delete their
    own manifests on top."""

    def __init__(self, *, timeout: float = 30.0, proxy: str = "pointsman") -> None:
        self.timeout = timeout
        self.proxy = proxy
        self.net = NETS[proxy]
        self.stack = ExitStack()
        self.folder = Path(tempfile.mkdtemp(prefix="gateway-conformance-"))
        self.pods: list[Pod] = []
        self.control_plane: ApiControlPlane | None = None

    def __enter__(self) -> MeshHarness:
        try:
            self.start()
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def start(self) -> None:
        self.control_plane = ApiControlPlane(f"file:{self.folder / 'store'}",
                                             name="conformance-cp")
        self.stack.callback(self.control_plane.stop)
        self.control_plane.wait_ready()
        text, deployments = split_manifests(BASE_MANIFESTS.read_text())
        self.apply(text, "base")
        for deployment in deployments:
            self.start_workload(deployment)
        for pod in self.pods:
            self.wait_sidecar_ready(pod)

    # ---- manifests --------------------------------------------------------------------------

    def _verb(self, verb: str, text: str, name: str) -> None:
        assert self.control_plane is not None
        path = self.folder / f"{name}.yaml"
        path.write_text(text)
        done = pointsman(verb, "-f", str(path), server=self.control_plane.api)
        if done.returncode != 0:
            raise RuntimeError(f"pointsman {verb} {name}: {done.stderr or done.stdout}")

    def apply(self, text: str, name: str) -> None:
        self._verb("apply", text, name)

    def delete(self, text: str, name: str) -> None:
        self._verb("delete", text, name)

    # ---- workloads --------------------------------------------------------------------------

    def start_workload(self, deployment: dict[str, Any]) -> Pod:
        assert self.control_plane is not None
        meta, template = deployment["metadata"], deployment["spec"]["template"]
        namespace = meta.get("namespace", "default")
        index = len(self.pods) + 1
        pod = Pod(pod_name(meta["name"], namespace), meta["name"], namespace,
                  dict(template["metadata"].get("labels", {})), f"{self.net}.{index}.1",
                  f"{self.net}.{index}.2", f"{self.net}.{index}.3")
        echo = ManagedProcess(python_argv(
            "-m", "tests.conformance.gateway_api.echo", "--pod", pod.name, "--namespace",
            namespace, "--host", pod.app_ip,
            *[arg for port in ECHO_HTTP_PORTS for arg in ("--http", str(port))],
            *[arg for port in ECHO_GRPC_PORTS for arg in ("--grpc", str(port))]),
            name=f"echo-{pod.name}")
        self.stack.callback(echo.stop)
        line = ready_line(namespace, pod.name)
        echo.wait_until(lambda: line in echo.output(), 30, "ready")
        pod.admin = free_port()
        labels = [arg for key, value in sorted(pod.labels.items())
                  for arg in ("--label", f"{key}={value}")]
        sidecar = ManagedProcess(python_argv(
            "-m", "proxy.deploy", "sidecar", "--workload", pod.deployment, "-n", namespace,
            *labels, "--instance-ip", pod.instance_ip, "--app-ip", pod.app_ip,
            "--outbound-ip", pod.outbound_ip, "--node-id", pod.name,
            "--server", f"127.0.0.1:{self.control_plane.port}",
            "--admin", f"127.0.0.1:{pod.admin}",
            "--proxy", self.proxy, "--log-level", "warning"), name=f"sidecar-{pod.name}")
        self.stack.callback(sidecar.stop)
        pod.sidecar = sidecar
        self.pods.append(pod)
        return pod

    def wait_sidecar_ready(self, pod: Pod) -> None:
        sidecar = pod.sidecar
        assert sidecar is not None
        url = f"http://127.0.0.1:{pod.admin}/ready"
        sidecar.wait_until(lambda: http_get(url)[0] == 200, 60, "ready")

    def client(self, app: str, namespace: str) -> Pod:
        """echo.ConnectToAppInNamespace: the first pod of `app` in `namespace`."""
        for pod in self.pods:
            if pod.namespace == namespace and pod.matches(app):
                return pod
        raise LookupError(f"no pod {app} in {namespace}")

    # ---- one test -----------------------------------------------------------------------------

    def run(self, test: ConformanceTest) -> Outcome:
        reason = unsupported(test)
        if reason is not None:
            return Outcome(test.short_name, "skipped", reason)
        applied = [(split_manifests((UPSTREAM / path).read_text())[0], Path(path).stem)
                   for path in test.manifests]
        try:
            for text, name in applied:
                self.apply(text, name)
        except RuntimeError as error:
            return Outcome(test.short_name, "failed", f"apply: {error}")
        try:
            for step in test.steps:
                problem = self.step(step)
                if problem is not None:
                    return Outcome(test.short_name, "failed", problem)
            return Outcome(test.short_name, "passed")
        finally:
            for text, name in reversed(applied):
                self.delete(text, name)

    def step(self, step: Exchanges | Weighted) -> str | None:
        client = self.client(step.app, step.namespace)
        if isinstance(step, Weighted):
            return self.weighted(client, step)
        for index, case in enumerate(step.cases):
            problem = self.converge(client, self.resolve(case))
            if problem is not None:
                return f"{case.name(index)}: {problem}"
        return None

    def resolve(self, case: ExpectedResponse) -> ExpectedResponse:
        """The pod address placeholder (MeshFrontend) made the echo-v2 pod's address."""
        if POD_ADDRESS_OF_ECHO_V2 not in case.request.host:
            return case
        address = self.client("app=echo,version=v2", "gateway-conformance-mesh").instance_ip
        return replace(case, request=replace(
            case.request, host=case.request.host.replace(POD_ADDRESS_OF_ECHO_V2, address)))

    def converge(self, client: Pod, case: ExpectedResponse) -> str | None:
        """http.AwaitConvergence: REQUIRED_SUCCESSES matches in a row before the timeout."""
        deadline = time.monotonic() + self.timeout
        streak, problem = 0, "no request made"
        while time.monotonic() < deadline:
            problem = mismatch_of(case, send(client, case))
            streak = streak + 1 if problem is None else 0
            if streak >= REQUIRED_SUCCESSES:
                return None
            if problem is not None:
                time.sleep(0.2)
        return f"not consistent after {self.timeout:.0f}s: {problem}"

    def weighted(self, client: Pod, step: Weighted) -> str | None:
        problem = self.converge(client, step.expected)
        if problem is not None:
            return problem
        for _ in range(WEIGHT_RETRIES):
            pods = batch(client, step.expected, WEIGHT_REQUESTS)
            problem = weights_mismatch(step.weights, pods)
            if problem is None:
                return None
        return problem


def mismatch_of(case: ExpectedResponse, observed: Observed | str) -> str | None:
    if isinstance(observed, str):
        return observed
    return mesh_mismatch(case, observed)


# ---- the client (echo-advanced's `client` command, as echo/pod.go runs it) --------------------

def target(host: str, default_port: int = 80) -> tuple[str, int]:
    """`echo`, `echo:7070`, `echo-v1.ns`, `10.0.0.1:8080` -> host name and port."""
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        return name, int(port)
    return host, default_port


def send(client: Pod, case: ExpectedResponse) -> Any:
    """One request from `client` through its sidecar's outbound listener; an Observed, or a
    string saying why there is no answer."""
    request = case.request
    try:
        if request.protocol.lower() == "grpc":
            return _send_grpc(client, case)
        return _send_http(client, case)
    except (OSError, http.client.HTTPException, grpc.RpcError) as error:
        return f"request failed: {error!r}"


def batch(client: Pod, case: ExpectedResponse, count: int) -> list[str]:
    """The pods answering `count` requests (the echo client's --count: one client, its
    connections kept alive, each request balanced by the sidecar on its own)."""
    if case.request.protocol.lower() == "grpc":
        with _grpc_channel(client, case) as channel:
            return [_pod_of(_call(channel, case)) for _ in range(count)]
    _, port = target(case.request.host or "echo")
    connection = http.client.HTTPConnection(client.outbound_ip, port, timeout=5)
    try:
        return [_pod_of(_exchange(connection, case)) for _ in range(count)]
    except (OSError, http.client.HTTPException):
        return []
    finally:
        connection.close()


def _pod_of(observed: Observed | str) -> str:
    return observed.hostname if isinstance(observed, Observed) else ""


def _send_http(client: Pod, case: ExpectedResponse) -> Observed:
    _, port = target(case.request.host or "echo")
    connection = http.client.HTTPConnection(client.outbound_ip, port, timeout=5)
    try:
        return _exchange(connection, case)
    finally:
        connection.close()


def _exchange(connection: http.client.HTTPConnection, case: ExpectedResponse) -> Observed:
    request = case.request
    headers = {"Host": request.host or "echo", **request.headers}
    connection.request(request.method or "GET", request.path or "/", headers=headers)
    response = connection.getresponse()
    body = response.read()
    return _observed(response.status, response.getheaders(), body)


def _send_grpc(client: Pod, case: ExpectedResponse) -> Observed:
    with _grpc_channel(client, case) as channel:
        return _call(channel, case)


def _grpc_channel(client: Pod, case: ExpectedResponse) -> grpc.Channel:
    host = case.request.host or "echo"
    _, port = target(host, 7070)
    return grpc.insecure_channel(f"{client.outbound_ip}:{port}",
                                 options=[("grpc.default_authority", host)])


def _call(channel: grpc.Channel, case: ExpectedResponse) -> Observed:
    call = channel.unary_unary(GRPC_METHOD)  # bytes in, bytes out: no generated code
    metadata = [(name.lower(), value) for name, value in case.request.headers.items()]
    try:
        body, state = call.with_call(b"", metadata=metadata, timeout=5)
    except grpc.RpcError as error:
        code = error.code()  # type: ignore[attr-defined]
        return Observed(500 + code.value[0], {}, [], "")
    headers = [(key, value) for key, value in (state.initial_metadata() or ())
               if isinstance(value, str)]
    return _observed(200, headers, body)


def _observed(status: int, headers: Sequence[tuple[str, str]], body: bytes) -> Observed:
    try:
        seen = json.loads(body) if body else {}
    except ValueError:
        seen = {}
    if not isinstance(seen, dict):
        seen = {}
    return Observed(status=status, request_headers=seen.get("headers", {}),
                    response_headers=list(headers), hostname=seen.get("pod", ""),
                    namespace=seen.get("namespace", ""), path=seen.get("path", ""))


def run_all(tests: Sequence[ConformanceTest], **options: Any) -> Iterator[Outcome]:
    with MeshHarness(**options) as harness:
        for test in tests:
            yield harness.run(test)


