"""Runs the translated gateway tests (gateway_tests.py: GATEWAY-HTTP, GATEWAY-GRPC, GATEWAY-TLS)
against real processes, as the Go suite runs them against a cluster.

- One control plane (file store). A GatewayClass named GATEWAY_CLASS with our controllerName,
  the suite's certificate Secrets (gateway_certs.py, SUITE_SETUP) and the base manifests
  (upstream base/manifests.yaml, `{GATEWAY_CLASS_NAME}` substituted as the Go suite does) are
  applied with `pointsman apply`; what our model does not take there is left out and said so
  (BASE_LEFT_OUT).
- Each Deployment of BACKENDS is one pod: the echo server (echo.py, HTTP on the echo-basic
  port 3000, or gRPC for the grpc-infra-backend ones) behind `pointsman sidecar --workload NAME
  --label app=NAME`, as mesh_runner.py starts the mesh's pods.
- Each test applies its manifests (`{GATEWAY_CLASS_NAME}` and `{GATEWAY_CONTROLLER_NAME}`
  substituted), plays its steps in order and deletes them again.
- A Gateway's data plane is `pointsman sidecar --gateway --service NAME -n NS`, started when a
  step first sends to it, at an address of its own (`--instance-ip 127.64.G.1`, see GATEWAY_NET):
  its listeners bind their own ports (80, 443, ...) there, which needs no port mapping (the
  harness runs as root; an unprivileged run would need CAP_NET_BIND_SERVICE), so Host headers
  and redirects keep the listener's port. The address stands for the Gateway's
  status.addresses (WaitForGatewayAddress).
- Status steps read `pointsman get KIND NAME -n NS -o json` and are checked with status.py's
  rules, retried until they hold (the helpers poll, up to STATUS_TIMEOUT); exchanges are sent as
  the suite's roundtripper sends them (Host header, path, TLS with SNI = Host trusting the
  Secret's certificate) and checked with expectations.gateway_mismatch (CompareRoundTrip),
  REQUIRED_SUCCESSES in a row (http.AwaitConvergence).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml

from controlplane import cli
from tests.conformance.gateway_api.echo import TCP_WELCOME, ready_line
from tests.conformance.gateway_api.expectations import (
    TIMEOUT_STATUSES,
    WEIGHT_REQUESTS,
    WEIGHT_RETRIES,
    ExpectedResponse,
    Request,
    gateway_mismatch,
    weights_mismatch,
)
from tests.conformance.gateway_api.gateway_addresses import (
    USABLE_ADDRESSES,
    overlay_addresses,
    status_addresses_mismatch,
    without,
)
from tests.conformance.gateway_api.gateway_certs import (
    Pem,
    config_map_manifest,
    secret_manifest,
    suite_certificates,
)
from tests.conformance.gateway_api.gateway_client import (
    ClientCertificate,
    batch,
    capture,
    grpc_batch,
    grpc_call,
    grpc_mismatch,
    split_address,
    tls_context,
    websocket_echo,
)
from tests.conformance.gateway_api.gateway_steps import (
    BackendHeaderNamesPod,
    GatewayAddress,
    GatewayConformanceTest,
    GatewayExchanges,
    GatewayGRPCExchanges,
    GatewayWeighted,
    GRPCCase,
    MirrorExchanges,
    PercentMirror,
    RetryProbe,
    SkipIfSupported,
    StatusAddresses,
    Step,
    Subtest,
    TLSExchange,
    TLSRejected,
    TLSStream,
    WebSocketEcho,
)
from tests.conformance.gateway_api.gateway_tests import GATEWAY_CONFORMANCE_TESTS
from tests.conformance.gateway_api.mesh_runner import Outcome, Pod, pod_name
from tests.conformance.gateway_api.mesh_suite import GATEWAY_PROFILES
from tests.conformance.gateway_api.nets import NETS
from tests.conformance.gateway_api.report import Profile
from tests.conformance.gateway_api.status import (
    GATEWAY_ACCEPTED,
    GATEWAY_PROGRAMMED,
    LISTENER_READY,
    NN,
    Apply,
    AttachedListeners,
    Create,
    Delete,
    GatewayClassAccepted,
    GatewayCondition,
    GatewayListeners,
    GatewayRef,
    GatewayZeroRoutes,
    LatestConditions,
    ListenersConditions,
    NamespacesReady,
    ObservedGenerationBumped,
    PolicyCondition,
    RouteCondition,
    RouteNoAcceptedParents,
    RouteParents,
    RoutesAccepted,
    Update,
    condition_mismatch,
    conditions_mismatch,
    listeners_mismatch,
    parents_mismatch,
)
from tests.conformance.gateway_api.websocket import BINARY, TEXT, Frame
from tests.support.meshapi import ApiControlPlane
from tests.support.ports import free_port
from tests.support.processes import ManagedProcess, http_get, python_argv

UPSTREAM = Path(__file__).parent / "upstream" / "conformance"
BASE_MANIFESTS = UPSTREAM / "base" / "manifests.yaml"
CONTROLLER_NAME = "pointsman.io/mesh"  # what the control plane writes as controllerName
GATEWAY_CLASS = "pointsman"  # the suite's --gateway-class
POD_NET = NETS.pods  # pod P: 127.63.P.1 (sidecar inbound), .2 (echo), .3 (sidecar outbound)
GATEWAY_NET = NETS.gateways  # Gateway proxy G binds its listeners at 127.64.G.1 (nets.py)
SKIP_FOR_READINESS = "gateway-api/skip-this-for-readiness"  # NamespacesMustBeReady skips these
ECHO_PORT = 3000  # echo-basic's HTTP (and, with GRPC_ECHO_SERVER, gRPC) port
ECHO_H2C_PORT = 3001  # ... its h2c port
ECHO_HTTPS_PORT = 8443  # ... and its HTTPS port, with TLS_SERVER_CERT (tls-backend)
NOT_RUN = "not-supported"  # an Outcome's result for a test naming a feature we do not claim
REQUIRED_SUCCESSES = 3  # config.DefaultTimeoutConfig RequiredConsecutiveSuccesses
STATUS_TIMEOUT = 30.0  # the helpers' waits (GatewayMustHaveLatestConditions: 60 s, most 30 s)
EXCHANGE_TIMEOUT = 30.0  # MaxTimeToConsistency

# The base manifests' Deployments this runner starts (one pod each), and how their echo
# server answers.
HTTP_BACKENDS = (("gateway-conformance-infra", "infra-backend-v1"),
                 ("gateway-conformance-infra", "infra-backend-v2"),
                 ("gateway-conformance-infra", "infra-backend-v3"),
                 ("gateway-conformance-app-backend", "app-backend-v1"),
                 ("gateway-conformance-app-backend", "app-backend-v2"),
                 ("gateway-conformance-web-backend", "web-backend"))
TLS_BACKENDS = (("gateway-conformance-infra", "tls-backend"),
                ("gateway-conformance-infra", "tls-backend-2"),
                ("gateway-conformance-infra", "tcp-backend"))
GRPC_BACKENDS = (("gateway-conformance-infra", "grpc-infra-backend-v1"),
                 ("gateway-conformance-infra", "grpc-infra-backend-v2"),
                 ("gateway-conformance-infra", "grpc-infra-backend-v3"))

# What of the base manifests is not applied, and why.
BASE_LEFT_OUT = {
    "Deployment": "workloads: started as echo processes behind `pointsman sidecar --workload`",
    "ConfigMap": "not in our model (GAPS.md): coredns' configuration",
    "Service coredns": "a UDP port (GATEWAY-UDP, not asked for; GAPS.md)",
}

# Tests our model cannot pass yet for a reason GAPS.md records: run, and reported skipped
# with the reason when they fail (a pass is a pass).
KNOWN_GAPS: dict[str, str] = {}  # GatewayListenerUnsupportedProtocol,
# GatewayInvalidParametersRef and GatewayInvalidTLSConfiguration were here until the model
# stored those objects with a failure status (the gwstatus branch): they pass now


# The extended features Pointsman claims for the gateway profiles (every test naming one passes
# here), and those it does not, with the reason: a test naming one of these is not run and
# counts nowhere (NOT_SUPPORTED), as the Go suite skips it.
SUPPORTED_FEATURES = frozenset({
    "GatewayHTTPListenerIsolation", "GatewayPort8080",
    "HTTPRoute303RedirectStatusCode", "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode", "HTTPRoutePathRedirect", "HTTPRoutePortRedirect",
    "HTTPRouteSchemeRedirect", "HTTPRouteHostRewrite", "HTTPRoutePathRewrite",
    "HTTPRouteQueryParamMatching", "HTTPRouteMethodMatching",
    "HTTPRouteResponseHeaderModification", "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteNamedRouteRule", "HTTPRouteParentRefPort", "HTTPRouteDestinationPortMatching",
    "HTTPRouteRequestTimeout", "HTTPRouteBackendTimeout", "TLSRouteModeTerminate",
    "HTTPRouteRequestMirror", "HTTPRouteRequestMultipleMirrors", "HTTPRouteCORS",
    "HTTPRouteBackendProtocolH2C", "HTTPRouteBackendURLRewrite", "HTTPRouteBackendRequestRedirect",
    "GatewayAddressEmpty",
    "TLSRouteModeMixed",
    "HTTPRouteRetry", "HTTPRouteRetryBackendTimeout", "HTTPRouteRequestPercentageMirror",
    "HTTPRouteBackendProtocolWebSocket", "HTTPRouteRetryConnectionError",
    "BackendTLSPolicy", "BackendTLSPolicySANValidation",
    "GatewayHTTPSListenerDetectMisdirectedRequests",
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
    "GatewayBackendClientCertificate",
    "ListenerSet", "GatewayStaticAddresses",
})
UNSUPPORTED_FEATURES: dict[str, str] = {
    "GatewayInfrastructurePropagation": "Pointsman creates no Pods, Services or "
    "ServiceAccounts for a Gateway (its proxy is started by hand), so spec.infrastructure's "
    "labels and annotations are taken and shown but applied to nothing (docs/mesh.md)",
}


def unsupported(test: GatewayConformanceTest) -> str | None:
    """Why `test` is not run (a feature outside every profile's core that we do not claim),
    or None."""
    core = frozenset().union(*(profile.core for profile in GATEWAY_PROFILES))
    missing = [feature for feature in test.features
               if feature not in core and feature not in SUPPORTED_FEATURES]
    if not missing:
        return None
    return "; ".join(f"{feature}: {UNSUPPORTED_FEATURES.get(feature, 'not claimed')}"
                     for feature in missing)


def pointsman_verb(*args: str, server: str) -> subprocess.CompletedProcess[str]:
    """`pointsman ARGS --server SERVER`, run in this process (controlplane.cli.main: the same
    argument parsing, gRPC calls and output as the command): a process per status poll would
    cost the suite most of its time in interpreter start-ups."""
    out, err = io.StringIO(), io.StringIO()
    argv = [*args, "--server", server]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as stop:  # argparse errors
            code = stop.code if isinstance(stop.code, int) else 2
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def core_tests(profile: Profile) -> list[GatewayConformanceTest]:
    """The translated tests that count in the profile's core (all their features core)."""
    return [test for test in GATEWAY_CONFORMANCE_TESTS
            if frozenset(test.features) <= profile.core]


def substitute(text: str) -> str:
    """The placeholders the Go suite fills in before applying (suite.Applier)."""
    return text.replace("{GATEWAY_CLASS_NAME}", GATEWAY_CLASS).replace(
        "{GATEWAY_CONTROLLER_NAME}", CONTROLLER_NAME)


def applicable(text: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The documents to apply and the Deployments, placeholders substituted."""
    keep, deployments = [], []
    for document in yaml.safe_load_all(substitute(text)):
        if not document:
            continue
        kind, name = document.get("kind"), document.get("metadata", {}).get("name")
        if kind == "Deployment":
            deployments.append(document)
            continue
        if kind == "Gateway":
            overlay_addresses(document)  # the suite's address placeholders (apply.go)
        if kind in BASE_LEFT_OUT or f"{kind} {name}" in BASE_LEFT_OUT:
            continue
        keep.append(document)
    return keep, deployments


def static_gateways(documents: Sequence[dict[str, Any]]) -> list[NN]:
    """The Gateways whose spec.addresses got the suite's usable addresses (overlay_addresses):
    their proxies bind spec.addresses (the model's bind address when a proxy names none)."""
    usable = {item["value"] for item in USABLE_ADDRESSES}
    return [NN(item["metadata"]["name"], item["metadata"].get("namespace", "default"))
            for item in documents if item.get("kind") == "Gateway"
            and usable & {address.get("value")
                          for address in item.get("spec", {}).get("addresses") or ()}]


@dataclass
class GatewayProxy:
    name: NN
    address: str
    admin: int
    process: ManagedProcess
    static: bool = False  # binds the Gateway's spec.addresses (no --instance-ip)


@dataclass
class Context:
    """One test's state while its steps run."""

    test: GatewayConformanceTest
    generations: dict[tuple[str, NN], int] = field(default_factory=dict)
    address: dict[NN, str] = field(default_factory=dict)
    # what an Update replaced that a later one restores (the Go test keeps it in a variable)
    saved: dict[tuple[str, NN], Any] = field(default_factory=dict)
    # objects Create steps made, deleted with the test's manifests (MustApplyObjectsWithCleanup)
    created: list[dict[str, Any]] = field(default_factory=list)


class GatewayHarness:
    """The control plane, the base manifests, their backends and the Gateway proxies; tests
    apply and delete their own manifests on top."""

    def __init__(self, *, backends: Sequence[tuple[str, str]] = HTTP_BACKENDS + GRPC_BACKENDS
                 + TLS_BACKENDS,
                 supported: frozenset[str] = SUPPORTED_FEATURES,
                 status_timeout: float = STATUS_TIMEOUT,
                 exchange_timeout: float = EXCHANGE_TIMEOUT) -> None:
        self.backends = tuple(backends)
        self.supported = supported
        self.status_timeout = status_timeout
        self.exchange_timeout = exchange_timeout
        self.stack = ExitStack()
        self.folder = Path(tempfile.mkdtemp(prefix="gateway-conformance-"))
        self.pods: list[Pod] = []
        self.proxies: dict[NN, GatewayProxy] = {}
        self.echoes: dict[str, ManagedProcess] = {}  # pod name -> its echo server
        self.control_plane: ApiControlPlane | None = None
        self.secrets: dict[NN, Pem] = {}
        self.cas: dict[NN, bytes] = {}
        self._applied = 0

    def __enter__(self) -> GatewayHarness:
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
                                             name="gateway-conformance-cp")
        self.stack.callback(self.control_plane.stop)
        self.control_plane.wait_ready()
        self.secrets, self.cas = suite_certificates()
        documents, deployments = applicable(BASE_MANIFESTS.read_text())
        gateway_class = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                         "metadata": {"name": GATEWAY_CLASS},
                         "spec": {"controllerName": CONTROLLER_NAME}}
        namespaces = [item for item in documents if item["kind"] == "Namespace"]
        rest = [item for item in documents if item["kind"] != "Namespace"]
        secrets = [secret_manifest(name, pem) for name, pem in self.secrets.items()]
        cas = [config_map_manifest(name, pem) for name, pem in self.cas.items()]
        self.apply_documents([gateway_class, *namespaces, *secrets, *cas, *rest], "base")
        wanted = set(self.backends)
        for deployment in deployments:
            meta = deployment["metadata"]
            if (meta.get("namespace", "default"), meta["name"]) in wanted:
                self.start_backend(deployment)
        for pod in self.pods:
            self.wait_ready(pod)

    def wait_ready(self, pod: Pod) -> None:
        assert pod.sidecar is not None
        url = f"http://127.0.0.1:{pod.admin}/ready"
        pod.sidecar.wait_until(lambda: http_get(url)[0] == 200, 60, "ready")

    def start_test_backends(self, deployments: Sequence[dict[str, Any]]) -> None:
        """A test's own Deployments (gateway-tls-backend-client-certificate.yaml's backend):
        one pod each, started on the test's first run and kept for the harness's life (their
        Services go with the test's manifests)."""
        for deployment in deployments:
            meta = deployment["metadata"]
            namespace = meta.get("namespace", "default")
            if any(pod.deployment == meta["name"] and pod.namespace == namespace
                   for pod in self.pods):
                continue
            self.wait_ready(self.start_backend(deployment))

    # ---- the API ----------------------------------------------------------------------------

    @property
    def api(self) -> str:
        assert self.control_plane is not None
        return self.control_plane.api

    def _verb(self, verb: str, documents: Sequence[Mapping[str, Any]], name: str,
              *flags: str) -> None:
        self._applied += 1
        path = self.folder / f"{self._applied:03d}-{name}.yaml"
        path.write_text(yaml.safe_dump_all(list(documents), sort_keys=False))
        done = pointsman_verb(verb, "-f", str(path), *flags, server=self.api)
        if done.returncode != 0:
            raise RuntimeError(f"pointsman {verb} {name}: {done.stderr or done.stdout}")

    def apply_documents(self, documents: Sequence[Mapping[str, Any]], name: str) -> None:
        self._verb("apply", documents, name)

    def delete_documents(self, documents: Sequence[Mapping[str, Any]], name: str) -> None:
        # a Delete step may have removed some already (HTTPRouteReferenceGrant's grant)
        self._verb("delete", documents, name, "--ignore-not-found")

    def get(self, kind: str, name: NN) -> dict[str, Any] | None:
        """`pointsman get KIND NAME [-n NS] -o json`: the object with its status, or None."""
        scope = ("-n", name.namespace) if name.namespace else ()
        done = pointsman_verb("get", kind.lower(), name.name, *scope, "-o", "json", server=self.api)
        if done.returncode != 0:
            return None
        found: dict[str, Any] = json.loads(done.stdout)
        return found

    def gateways_in(self, namespace: str) -> list[dict[str, Any]]:
        done = pointsman_verb("get", "gateway", "-n", namespace, "-o", "json", server=self.api)
        if done.returncode != 0:
            return []
        listed = json.loads(done.stdout)
        return list(listed.get("items", [listed] if listed.get("kind") == "Gateway" else []))

    # ---- backends and Gateway proxies -------------------------------------------------------

    def start_backend(self, deployment: dict[str, Any]) -> Pod:
        assert self.control_plane is not None
        meta, template = deployment["metadata"], deployment["spec"]["template"]
        namespace = meta.get("namespace", "default")
        index = len(self.pods) + 1
        pod = Pod(pod_name(meta["name"], namespace), meta["name"], namespace,
                  dict(template["metadata"].get("labels", {})), f"{POD_NET}.{index}.1",
                  f"{POD_NET}.{index}.2", f"{POD_NET}.{index}.3")
        env = {item.get("name") for container in template["spec"]["containers"]
               for item in container.get("env", ())}
        if "TCP_ECHO_SERVER" in env:
            serve = ["--tcp-echo", str(ECHO_PORT), "--tcp-echo-tls", str(ECHO_HTTPS_PORT),
                     *self.https_arguments(pod, template)[2:]]
        elif "GRPC_ECHO_SERVER" in env:
            serve = ["--grpc-echo", str(ECHO_PORT)]
            if "TLS_SERVER_CERT" in env:  # grpc-infra-backend-v1: GrpcEcho over TLS too
                serve += ["--grpc-echo-tls", str(ECHO_HTTPS_PORT),
                          *self.https_arguments(pod, template)[2:]]
        else:  # echo-basic: HTTP/1.1 on 3000, h2c on 3001 (infra-backend-v1's second-port)
            serve = ["--http", str(ECHO_PORT), "--h2c", str(ECHO_H2C_PORT)]
        if "TLS_SERVER_CERT" in env and not env & {"GRPC_ECHO_SERVER", "TCP_ECHO_SERVER"}:
            serve += self.https_arguments(pod, template)
            if "TLS_CLIENT_CACERTS" in env:
                serve += ["--client-ca", self.client_ca_file(pod, template)]
        echo = ManagedProcess(python_argv(
            "-m", "tests.conformance.gateway_api.echo", "--pod", pod.name, "--namespace",
            namespace, "--host", pod.app_ip, *serve), name=f"echo-{pod.name}")
        self.stack.callback(echo.stop)
        line = ready_line(namespace, pod.name)
        echo.wait_until(lambda: line in echo.output(), 30, "ready")
        self.echoes[pod.name] = echo
        pod.admin = free_port()
        labels = [arg for key, value in sorted(pod.labels.items())
                  for arg in ("--label", f"{key}={value}")]
        sidecar = ManagedProcess(python_argv(
            "-m", "proxy.deploy", "sidecar", "--workload", pod.deployment, "-n", namespace,
            *labels, "--instance-ip", pod.instance_ip, "--app-ip", pod.app_ip,
            "--outbound-ip", pod.outbound_ip, "--node-id", pod.name,
            "--server", f"127.0.0.1:{self.control_plane.port}",
            "--admin", f"127.0.0.1:{pod.admin}", "--log-level", "warning",
            "--shutdown-drain-s", "0"),
            name=f"sidecar-{pod.name}")
        self.stack.callback(sidecar.stop)
        pod.sidecar = sidecar
        self.pods.append(pod)
        return pod

    def https_arguments(self, pod: Pod, template: dict[str, Any]) -> list[str]:
        """echo-basic with TLS_SERVER_CERT: HTTPS on ECHO_HTTPS_PORT with the certificate of
        the Secret its volume mounts (one SUITE_SETUP generated)."""
        secret = next(volume["secret"]["secretName"]
                      for volume in template["spec"].get("volumes", ()) if "secret" in volume)
        pem = self.secrets[NN(secret, pod.namespace)]
        cert, key = self.folder / f"{pod.name}.crt", self.folder / f"{pod.name}.key"
        cert.write_bytes(pem.cert)
        key.write_bytes(pem.key)
        return ["--https", str(ECHO_HTTPS_PORT), "--cert", str(cert), "--key", str(key)]

    def client_files(self, secret: NN) -> ClientCertificate:
        """The Secret's certificate and key as files, for a client presenting them."""
        pem = self.secrets[secret]
        cert = self.folder / f"client-{secret.namespace}-{secret.name}.crt"
        key = cert.with_suffix(".key")
        cert.write_bytes(pem.cert)
        key.write_bytes(pem.key)
        return str(cert), str(key)

    def client_ca_file(self, pod: Pod, template: dict[str, Any]) -> str:
        """TLS_CLIENT_CACERTS: the CA of the ConfigMap the pod's volume mounts, as a file."""
        name = next(volume["configMap"]["name"]
                    for volume in template["spec"].get("volumes", ()) if "configMap" in volume)
        path = self.folder / f"{pod.name}-client-ca.crt"
        path.write_bytes(self.cas[NN(name, pod.namespace)])
        return str(path)

    def pod(self, deployment: str) -> Pod:
        return next(pod for pod in self.pods if pod.deployment == deployment)

    def gateway_proxy(self, name: NN, static: str | None = None) -> GatewayProxy:
        """The Gateway's data plane, started on first use; `static`: the Gateway has static
        addresses (spec.addresses, this one usable) and its proxy binds those: no
        --instance-ip (controlplane/mesh/compile/compiler.py `_gateway`)."""
        found = self.proxies.get(name)
        if found is not None and found.process.alive():
            return found
        assert self.control_plane is not None
        address = found.address if found else (
            static or f"{GATEWAY_NET}.{len(self.proxies) + 1}.1")
        binds_spec = static is not None or (found is not None and found.static)
        instance = () if binds_spec else ("--instance-ip", address)
        admin = free_port()
        process = ManagedProcess(python_argv(
            "-m", "proxy.deploy", "sidecar", "--gateway", "--service", name.name,
            "-n", name.namespace, *instance,
            "--node-id", f"gateway-{name.namespace}-{name.name}"[:200],
            "--server", f"127.0.0.1:{self.control_plane.port}",
            "--admin", f"127.0.0.1:{admin}", "--log-level", "warning",
            "--shutdown-drain-s", "0"),  # nothing in flight to drain between tests
            name=f"gateway-{name.name}"[:60])
        self.stack.callback(process.stop)
        proxy = self.proxies[name] = GatewayProxy(name, address, admin, process, binds_spec)
        return proxy

    def stop_gateway_proxy(self, name: NN) -> None:
        found = self.proxies.get(name)
        if found is not None:
            found.process.stop()

    def gateway_address(self, ref: GatewayRef) -> str:
        """WaitForGatewayAddress: the proxy's address and the port of the ref's first
        listener (the Gateway's first listener when the ref names none)."""
        gateway = self.wait_for(lambda: self.get("Gateway", ref.nn), "Gateway exists")
        listeners = gateway["spec"]["listeners"]
        port = listeners[0]["port"]
        for listener in listeners:
            if ref.listeners and listener["name"] == ref.listeners[0]:
                port = listener["port"]
        return f"{self.gateway_proxy(ref.nn).address}:{port}"

    def wait_for(self, probe: Callable[[], Any], what: str) -> Any:
        deadline = time.monotonic() + self.status_timeout
        while time.monotonic() < deadline:
            found = probe()
            if found is not None:
                return found
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for: {what}")

    # ---- one test -----------------------------------------------------------------------------

    def run(self, test: GatewayConformanceTest) -> Outcome:
        reason = unsupported(test)
        if reason is not None:
            return Outcome(test.short_name, NOT_RUN, reason)
        outcome = self._run(test)
        gap = KNOWN_GAPS.get(test.short_name)
        if outcome.result == "failed" and gap is not None:
            return Outcome(test.short_name, "skipped", f"{gap} [{outcome.reason}]")
        return outcome

    def _run(self, test: GatewayConformanceTest) -> Outcome:
        applied: list[tuple[list[dict[str, Any]], str]] = []
        context = Context(test)
        try:
            deployments: list[dict[str, Any]] = []
            try:
                for path in test.manifests:
                    documents, found = applicable((UPSTREAM / path).read_text())
                    self.apply_documents(documents, Path(path).stem)
                    applied.append((documents, Path(path).stem))
                    deployments += found
            except RuntimeError as error:
                return Outcome(test.short_name, "failed", f"apply: {error}")
            self.start_test_backends(deployments)
            for documents, _ in applied:  # the implementation deploys these at once: the
                for gateway in static_gateways(documents):  # status says if they bind
                    self.gateway_proxy(gateway, USABLE_ADDRESSES[0]["value"])
            problem = self.steps(context, test.steps)
            if problem is not None:
                return Outcome(test.short_name, "failed", problem)
            return Outcome(test.short_name, "passed")
        finally:
            if context.created:
                self.delete_documents(context.created, "created")
            for documents, name in reversed(applied):
                for document in documents:
                    if document["kind"] == "Gateway":
                        self.stop_gateway_proxy(NN(document["metadata"]["name"],
                                                   document["metadata"].get("namespace",
                                                                            "default")))
                self.delete_documents(documents, name)

    def steps(self, context: Context, steps: Sequence[Step]) -> str | None:
        for step in steps:
            if isinstance(step, SkipIfSupported):
                if step.feature in self.supported:
                    return None
                continue
            try:
                problem = self.step(context, step)
            except AssertionError as error:
                problem = str(error)
            if problem is not None:
                label = step.name if isinstance(step, Subtest) else type(step).__name__
                return f"{label}: {problem}"
        return None

    def step(self, context: Context, step: Step) -> str | None:
        if isinstance(step, Subtest):
            return self.steps(context, step.steps)
        handler = STEP_HANDLERS.get(type(step))
        if handler is None:
            return f"the runner does not play {type(step).__name__} steps yet"
        return handler(self, context, step)

    def eventually(self, check: Callable[[], str | None],
                   timeout: float | None = None) -> str | None:
        """Polls `check` until it returns None; the last problem after the timeout."""
        deadline = time.monotonic() + (timeout or self.status_timeout)
        problem: str | None = "not checked"
        while time.monotonic() < deadline:
            problem = check()
            if problem is None:
                return None
            time.sleep(0.3)
        return problem

    # ---- status steps -----------------------------------------------------------------------

    def _status(self, kind: str, name: NN) -> dict[str, Any] | str:
        found = self.get(kind, name)
        if found is None:
            return f"{kind} {name.namespace}/{name.name} not found"
        status: dict[str, Any] = found.get("status", {})
        return status

    def routes_accepted(self, context: Context, step: RoutesAccepted) -> str | None:
        """GatewayAndRoutesMustBeAccepted, or RoutesAndParentMustBeAccepted when the ref is a
        ListenerSet (NewResourceRef): the routes' parents are then of that kind and the
        listeners checked are the ListenerSet's (ResourceListenersMustHaveConditions); the
        address the exchanges go to stays its Gateway's (GatewayExchanges)."""
        def check() -> str | None:
            gateway = self._status(step.gateway.kind, step.gateway.nn)
            if isinstance(gateway, str):
                return gateway
            if step.listeners_ready:
                for listener in gateway.get("listeners", ()):
                    why = conditions_mismatch(LISTENER_READY, listener.get("conditions", ()))
                    if why:
                        return f"listener {listener.get('name')}: {why}"
            for route in step.routes:
                status = self._status(step.kind, route)
                if isinstance(status, str):
                    return status
                why = parents_mismatch(step.expected_parents(route), status.get("parents", ()),
                                       CONTROLLER_NAME)
                if why:
                    return why
            return None
        return self.eventually(check)

    def route_condition(self, context: Context, step: RouteCondition) -> str | None:
        def check() -> str | None:
            status = self._status(step.kind, step.route)
            if isinstance(status, str):
                return status
            for parent in status.get("parents", ()):
                ref = parent.get("parentRef", {})
                if ref.get("name") != step.gateway.name:
                    continue
                if step.gateway.namespace and ref.get("namespace") not in (
                        None, step.gateway.namespace):
                    continue
                return condition_mismatch(step.condition, parent.get("conditions", ()))
            return f"route {step.route} has no parent {step.gateway}"
        return self.eventually(check)

    def route_parents(self, context: Context, step: RouteParents) -> str | None:
        def check() -> str | None:
            status = self._status(step.kind, step.route)
            if isinstance(status, str):
                return status
            return parents_mismatch(step, status.get("parents", ()), CONTROLLER_NAME)
        return self.eventually(check)

    def no_accepted_parents(self, context: Context, step: RouteNoAcceptedParents
                            ) -> str | None:
        def check() -> str | None:
            status = self._status(step.kind, step.route)
            if isinstance(status, str):
                return status
            for parent in status.get("parents", ()):
                for cond in parent.get("conditions", ()):
                    if cond.get("type") == "Accepted" and cond.get("status") == "True":
                        return f"parent {parent.get('parentRef')} is Accepted"
            return None
        return self.eventually(check)

    def gateway_listeners(self, context: Context, step: GatewayListeners) -> str | None:
        def check() -> str | None:
            status = self._status(step.kind, step.gateway)
            if isinstance(status, str):
                return status
            return listeners_mismatch(step.listeners, status.get("listeners", ()))
        return self.eventually(check)

    def gateway_condition(self, context: Context, step: GatewayCondition) -> str | None:
        def check() -> str | None:
            status = self._status(step.kind, step.gateway)
            if isinstance(status, str):
                return status
            return condition_mismatch(step.condition, status.get("conditions", ()))
        return self.eventually(check)

    def listeners_conditions(self, context: Context, step: ListenersConditions
                             ) -> str | None:
        def check() -> str | None:
            status = self._status(step.kind, step.gateway)
            if isinstance(status, str):
                return status
            for listener in status.get("listeners", ()):
                if step.listeners and listener.get("name") not in step.listeners:
                    continue
                why = conditions_mismatch(step.conditions, listener.get("conditions", ()))
                if why:
                    return f"listener {listener.get('name')}: {why}"
            return None
        return self.eventually(check)

    def zero_routes(self, context: Context, step: GatewayZeroRoutes) -> str | None:
        def check() -> str | None:
            status = self._status("Gateway", step.gateway)
            if isinstance(status, str):
                return status
            for listener in status.get("listeners", ()):
                if listener.get("attachedRoutes", 0) != 0:
                    return f"listener {listener.get('name')} has attachedRoutes " \
                           f"{listener.get('attachedRoutes')}"
            return None
        return self.eventually(check)

    def attached_listeners(self, context: Context, step: AttachedListeners) -> str | None:
        def check() -> str | None:
            status = self._status("Gateway", step.gateway)
            if isinstance(status, str):
                return status
            found = status.get("attachedListenerSets", 0)  # Gateway status.attachedListenerSets
            if found != step.count:
                return f"attachedListenerSets {found}, expected {step.count}"
            return None
        return self.eventually(check)

    def latest_conditions(self, context: Context, step: LatestConditions) -> str | None:
        def check() -> str | None:
            found = self.get(step.kind, step.name)
            if found is None:
                return f"{step.kind} {step.name} not found"
            generation = found["metadata"].get("generation")
            status = found.get("status", {})
            conditions = list(status.get("conditions", ()))
            for parent in status.get("parents", ()):
                conditions += parent.get("conditions", ())
            if not conditions:
                return "no conditions"
            stale = [cond for cond in conditions
                     if cond.get("observedGeneration") != generation]
            if stale:
                return f"conditions not at generation {generation}: {stale}"
            context.generations.setdefault((step.kind, step.name), generation)
            return None
        return self.eventually(check)

    def generation_bumped(self, context: Context, step: ObservedGenerationBumped
                          ) -> str | None:
        before = context.generations.get((step.kind, step.name))
        if before is None:
            return "no observedGeneration recorded before the update"
        found = self.get(step.kind, step.name)
        if found is None:
            return f"{step.kind} {step.name} not found"
        if found["metadata"].get("generation") == before:
            return f"metadata.generation still {before} after the update"
        status = found.get("status", {})
        conditions = list(status.get("conditions", ()))
        for parent in status.get("parents", ()):
            conditions += parent.get("conditions", ())
        stale = [cond for cond in conditions if cond.get("observedGeneration", 0) <= before]
        return f"conditions not bumped past {before}: {stale}" if stale else None

    def class_accepted(self, context: Context, step: GatewayClassAccepted) -> str | None:
        def check() -> str | None:
            status = self._status("GatewayClass", NN(step.name, ""))
            if isinstance(status, str):
                return status
            from tests.conformance.gateway_api.status import Condition
            return condition_mismatch(Condition("Accepted", step.status),
                                      status.get("conditions", ()))
        return self.eventually(check)

    def namespaces_ready(self, context: Context, step: NamespacesReady) -> str | None:
        """NamespacesMustBeReady: every Gateway of the namespaces Accepted and Programmed (the
        Pods are ours: started and ready before any test)."""
        def check() -> str | None:
            for namespace in step.namespaces:
                for gateway in self.gateways_in(namespace):
                    annotations = gateway["metadata"].get("annotations") or {}
                    if annotations.get(SKIP_FOR_READINESS) == "true":
                        continue
                    conditions = gateway.get("status", {}).get("conditions", ())
                    why = condition_mismatch(GATEWAY_PROGRAMMED, conditions) or \
                        condition_mismatch(GATEWAY_ACCEPTED, conditions)
                    if why:
                        return f"Gateway {namespace}/{gateway['metadata']['name']}: {why}"
            return None
        return self.eventually(check)

    # ---- procedural steps -------------------------------------------------------------------

    def apply_step(self, context: Context, step: Apply) -> str | None:
        documents = applicable((UPSTREAM / step.manifest).read_text())[0]
        try:
            self.apply_documents(documents, Path(step.manifest).stem)
        except RuntimeError as error:
            return str(error)
        return None

    def delete_step(self, context: Context, step: Delete) -> str | None:
        scope = ("-n", step.name.namespace) if step.name.namespace else ()
        done = pointsman_verb("delete", step.kind.lower(), step.name.name, *scope, server=self.api)
        return None if done.returncode == 0 else done.stderr or done.stdout

    def create_step(self, context: Context, step: Create) -> str | None:
        """client.Create of an object the Go test builds in code: ConfigMaps, whose data may
        copy a suite CA (`{ca.crt of ConfigMap NAME}`)."""
        if step.kind != "ConfigMap":
            return f"the runner does not create {step.kind} objects: {step.note}"
        document = {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": step.name.name, "namespace": step.name.namespace},
                    "data": {key: self.filled(value, step.name.namespace)
                             for key, value in dict(step.spec.get("data", {})).items()}}
        try:
            self.apply_documents([document], f"create-{step.name.name}"[:60])
        except RuntimeError as error:
            return str(error)
        context.created.append(document)
        return None

    def filled(self, value: str, namespace: str) -> str:
        """A Create's or Update's value with `{ca.crt of ConfigMap NAME}` replaced by that
        suite CA's PEM (what the Go test read from the ConfigMap)."""
        prefix = "{ca.crt of ConfigMap "
        if not (value.startswith(prefix) and value.endswith("}")):
            return value
        return self.cas[NN(value[len(prefix):-1], namespace)].decode()

    def update_step(self, context: Context, step: Update) -> str | None:
        found = self.get(step.kind, step.name)
        if found is None:
            return f"{step.kind} {step.name} not found"
        updated = UPDATES.get((context.test.short_name, step.kind))
        if updated is None:
            return f"the runner has no translation of this update: {step.note or step.change}"
        document = {key: found[key] for key in found if key not in ("status",)}
        document["metadata"] = {key: found["metadata"][key]
                                for key in ("name", "namespace", "labels", "annotations")
                                if key in found["metadata"]}
        problem = updated(self, context, step, document)
        if problem is not None:
            return problem
        try:
            self.apply_documents([document], f"update-{step.name.name}"[:60])
        except RuntimeError as error:
            return str(error)
        return None

    # ---- exchanges ----------------------------------------------------------------------------

    def exchanges(self, context: Context, step: GatewayExchanges) -> str | None:
        address = self.gateway_address(step.gateway)
        if step.port:
            address = f"{address.rsplit(':', 1)[0]}:{step.port}"
        if not step.use_port:
            address = address.rsplit(":", 1)[0]
        trust = self.secrets[step.server_cert].cert if step.server_cert else b""
        for index, case in enumerate(step.cases):
            if case.request.client_cert:  # the Secret's certificate, as the Go test reads it
                pem = self.secrets[NN(case.request.client_cert, case.namespace)].cert.decode()
                case = replace(case, request=replace(case.request, client_cert=pem))
            if step.expect_failure and step.scheme == "http":
                problem = self.consistent_failure(address, case)
            else:
                problem = self.converge(lambda case=case: self.round_trip(
                    step.scheme, address, case, trust), step.expect_failure)
            if problem is not None:
                return f"{case.name(index)}: {problem}"
        return None

    def consistent_failure(self, address: str, case: ExpectedResponse) -> str | None:
        """http.WaitForConsistentFailureResponse (MakeRequestAndExpectFailure): an answer
        that is neither 200 nor a timeout (408, 504), REQUIRED_SUCCESSES in a row; a request
        that gets no answer is not ready yet, a 200 fails the test at once."""
        deadline = time.monotonic() + self.exchange_timeout
        streak, seen = 0, "no request made"
        while time.monotonic() < deadline:
            captured = capture("http", address, case, b"")
            if not isinstance(captured, str) and captured.status == 200:
                return "the request succeeded (200), it should have failed"
            ok = not isinstance(captured, str) and captured.status not in TIMEOUT_STATUSES
            seen = captured if isinstance(captured, str) else f"status {captured.status}"
            streak = streak + 1 if ok else 0
            if streak >= REQUIRED_SUCCESSES:
                return None
            if not ok:
                time.sleep(0.2)
        return f"no consistent failure response after {self.exchange_timeout:.0f}s: {seen}"

    def converge(self, attempt: Callable[[], str | None], expect_failure: bool = False,
                 required: int = REQUIRED_SUCCESSES) -> str | None:
        """http.AwaitConvergence: `required` results in a row before the timeout."""
        deadline = time.monotonic() + self.exchange_timeout
        streak, problem = 0, "no request made"
        while time.monotonic() < deadline:
            problem = attempt()
            ok = (problem is not None and problem.startswith("request failed")) \
                if expect_failure else problem is None
            streak = streak + 1 if ok else 0
            if streak >= required:
                return None
            if not ok:
                time.sleep(0.2)
        if expect_failure:
            return f"requests did not fail consistently after {self.exchange_timeout:.0f}s"
        return f"not consistent after {self.exchange_timeout:.0f}s: {problem}"

    def round_trip(self, scheme: str, address: str, case: ExpectedResponse,
                   trust: bytes = b"", client: ClientCertificate | None = None) -> str | None:
        captured = capture(scheme, address, case, trust, client)
        if isinstance(captured, str):
            return captured
        url = f"{scheme}://{case.request.host or address}{case.request.path or '/'}"
        return gateway_mismatch(case, url, captured)

    def weighted(self, context: Context, step: GatewayWeighted) -> str | None:
        address = self.gateway_address(step.gateway)
        case = step.expected
        if isinstance(case, GRPCCase):
            grpc_case = case
            problem = self.converge(lambda: grpc_mismatch(
                replace(grpc_case, backend=""), *grpc_call(address, grpc_case)))
        else:
            http_case = case
            problem = self.converge(lambda: self.round_trip("http", address, http_case))
        if problem is not None:
            return problem
        for _ in range(WEIGHT_RETRIES):
            pods = grpc_batch(address, case, WEIGHT_REQUESTS) if isinstance(
                case, GRPCCase) else batch(address, case, WEIGHT_REQUESTS)
            problem = weights_mismatch(step.weights, pods)
            if problem is None:
                return None
        return problem


def backend_header_names_pod(harness: GatewayHarness, context: Context,
                             step: BackendHeaderNamesPod) -> str | None:
    """HTTPRouteRequestHeaderModifierBackendWeights: consistent first, then `count` requests;
    each backend saw exactly one `Backend` header, and the answering pod's name starts with
    its value."""
    address = harness.gateway_address(step.gateway)
    problem = harness.converge(lambda: harness.round_trip("http", address, step.expected))
    if problem is not None:
        return problem
    for index in range(step.count):
        captured = capture("http", address, step.expected)
        if isinstance(captured, str):
            return f"request {index}: {captured}"
        values = next((list(found) for name, found in captured.request_headers.items()
                       if name.lower() == "backend"), [])
        if len(values) != 1:
            return f"request {index}: expected one Backend header, got {values}"
        if not captured.pod.startswith(values[0]):
            return f"request {index}: pod {captured.pod} does not start with {values[0]}"
    return None


# ---- TLS (tls.MakeTLSRequest..., MakeTLSConnectionAndExpectEventuallyConnectionRejection) -----

def tls_exchange(harness: GatewayHarness, context: Context, step: TLSExchange) -> str | None:
    """An https request with SNI `server_name`, trusting the Secret's certificate, checked
    with CompareRoundTrip."""
    address = harness.gateway_address(step.gateway)
    if step.port:
        address = f"{address.rsplit(':', 1)[0]}:{step.port}"
    trust = harness.secrets[step.server_cert].cert
    client = harness.client_files(step.client_cert) if step.client_cert else None
    case = replace(step.expected, server_name=step.server_name)
    problem = harness.converge(lambda: harness.round_trip("https", address, case, trust,
                                                          client), step.expect_failure)
    if problem is None:
        return None
    return f"SNI {step.server_name}, Host {case.request.host}: {problem}"


def tls_rejected(harness: GatewayHarness, context: Context, step: TLSRejected) -> str | None:
    """A TLS handshake with SNI `server_name` to the Gateway's address fails, consistently
    (no certificate is checked: the connection must not get that far)."""
    address = harness.gateway_address(step.gateway)
    host, port = split_address(address)

    def attempt() -> str | None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with socket.create_connection((host, port or 443), timeout=5) as raw, \
                    context.wrap_socket(raw, server_hostname=step.server_name):
                return "the handshake succeeded"
        except (OSError, ssl.SSLError) as error:
            return f"request failed: {error!r}"
    return harness.converge(attempt, expect_failure=True)


def tls_stream(harness: GatewayHarness, context: Context, step: TLSStream) -> str | None:
    """tcp.MakeTCPRequestAndExpectEventuallyValidResponse over TLS: SNI `server_name`, the CA
    of the ConfigMap trusted; the echo-basic TCP server's welcome, PING/PONG, IS_TLS and TEST
    (namespace, pod name `backend-...`, the SNI it saw)."""
    address = harness.gateway_address(step.gateway)
    host, port = split_address(address)
    trust = harness.cas[step.ca]

    def attempt() -> str | None:
        context = tls_context(trust)
        try:
            with socket.create_connection((host, port or 443), timeout=5) as raw, \
                    context.wrap_socket(raw, server_hostname=step.server_name) as tls, \
                    tls.makefile("rwb") as stream:
                return _tcp_echo_mismatch(stream, step)
        except (OSError, ssl.SSLError, ValueError) as error:
            return f"request failed: {error!r}"
    return harness.converge(attempt)


def _tcp_echo_mismatch(stream: Any, step: TLSStream) -> str | None:
    def ask(line: bytes) -> bytes:
        stream.write(line)
        stream.flush()
        answer: bytes = stream.readline()
        return answer
    welcome = stream.readline()
    if welcome != TCP_WELCOME:
        return f"welcome message {welcome!r}"
    if ask(b"PING\n") != b"PONG\n":
        return "no PONG"
    is_tls = ask(b"IS_TLS\n").strip().decode()
    if is_tls != str(step.backend_is_tls).lower():
        return f"IS_TLS answered {is_tls}"
    payload = json.loads(ask(b"TEST\n"))
    if payload.get("namespace") != step.namespace:
        return f"namespace {payload.get('namespace')}"
    if not str(payload.get("pod", "")).startswith(f"{step.backend}-"):
        return f"pod {payload.get('pod')} is not a {step.backend} pod"
    server_name = (payload.get("tls") or {}).get("serverName", "")
    if step.hostname and server_name != step.hostname:
        return f"backend saw SNI {server_name!r}, expected {step.hostname!r}"
    return None


# ---- gRPC ------------------------------------------------------------------------------------

def grpc_exchanges(harness: GatewayHarness, context: Context, step: GatewayGRPCExchanges
                   ) -> str | None:
    address = harness.gateway_address(step.gateway)
    for index, case in enumerate(step.cases):
        def attempt(case: GRPCCase = case) -> str | None:
            return grpc_mismatch(case, *grpc_call(address, case))

        def failure(case: GRPCCase = case) -> str | None:
            """MakeRequestAndExpectEventuallyConsistentFailure: any status but OK (the RPC's
            error is its status: SendRPC fails only when it cannot make a connection)."""
            code, _ = grpc_call(address, case)
            if code == 0:
                raise AssertionError("the RPC succeeded (OK), it should have failed")
            return f"request failed: status {code}"
        problem = harness.converge(failure if step.expect_failure else attempt,
                                   step.expect_failure)
        if problem is not None:
            return f"case {index} ({case.method} {dict(case.metadata)}): {problem}"
    return None


MIRROR_TIMEOUT = 10.0  # ExpectMirroredRequest waits RequestTimeout (10 s) per mirror
REQUEST_ID = "gateway-api-conformance-request-id"  # http.AddRequestIDQueryParam


def with_request_id(case: ExpectedResponse) -> ExpectedResponse:
    """http.ExpectedResponse.AddRequestIDQueryParam: a fresh id as a query parameter of the
    request's path, and of the expected request's path when it has one."""
    token = f"{REQUEST_ID}={uuid.uuid4()}"

    def add(path: str) -> str:
        return f"{path}{'&' if '?' in path else '?'}{token}"
    request = replace(case.request, path=add(case.request.path or "/"))
    expected = case.expected_request
    if expected is not None and expected.path:
        expected = replace(expected, path=add(expected.path))
    return replace(case, request=request, expected_request=expected)


def mirror_exchanges(harness: GatewayHarness, context: Context, step: MirrorExchanges
                     ) -> str | None:
    """Per case: a request id added, the mirrors' logs watched from before the request
    (their length noted), the request made consistent, then each mirror backend's pods must
    log `Echoing back request made to PATH` (ExpectMirroredRequest)."""
    address = harness.gateway_address(step.gateway)
    for index, original in enumerate(step.cases):
        case = with_request_id(original)
        echoes = {mirror.name: [harness.echoes[pod.name] for pod in harness.pods
                                if pod.deployment == mirror.name
                                and pod.namespace == mirror.namespace]
                  for mirror in case.mirrored_to}
        problem = harness.converge(lambda case=case: harness.round_trip("http", address, case))
        if problem is not None:
            return f"{case.name(index)}: {problem}"
        line = f"Echoing back request made to {case.request.path} to client"
        for name, processes in echoes.items():
            deadline = time.monotonic() + MIRROR_TIMEOUT
            while not any(line in echo.output() for echo in processes):
                if time.monotonic() > deadline:
                    return f"{case.name(index)}: no mirrored request in the logs of {name}"
                time.sleep(0.2)
    return None


def mirror_count_mismatch(name: str, count: int, percent: int, requests: int,
                          stddevs: float) -> str | None:
    """testMirroredRequestsDistribution: each request is mirrored with probability p, so the
    count is Binomial(requests, p); it must lie within `stddevs` standard deviations
    (sqrt(n p (1 - p))) of n p."""
    p = percent / 100
    expected = requests * p
    margin = stddevs * math.sqrt(requests * p * (1 - p))
    if expected - margin <= count <= expected + margin:
        return None
    return (f"pod {name} did not meet the mirroring percentage within tolerance: expected "
            f"between {expected - margin:.1f} and {expected + margin:.1f}, got {count}")


class _RequestFailed(Exception):
    """A request of a distribution round did not get its answer (the Go test's goroutine
    fails the test)."""


def _mirror_round(harness: GatewayHarness, address: str, case: ExpectedResponse,
                  step: PercentMirror) -> str | None:
    """`step.requests` requests, `step.concurrency` at a time, each made consistent once
    (RequiredConsecutiveSuccesses 1); then each mirror's count of the log line for the path
    (GetMirrorLogRegexp), which must lie within the tolerance."""
    def one(_: int) -> str | None:
        return harness.converge(lambda: harness.round_trip("http", address, case), required=1)
    with ThreadPoolExecutor(max_workers=step.concurrency) as pool:
        failed = next((found for found in pool.map(one, range(step.requests)) if found), None)
    if failed is not None:
        raise _RequestFailed(failed)
    line = f"Echoing back request made to {case.request.path} to client"
    problems = []
    for mirror in case.mirrored_to:
        count = sum(harness.echoes[pod.name].output().count(line) for pod in harness.pods
                    if pod.deployment == mirror.name and pod.namespace == mirror.namespace)
        problems.append(mirror_count_mismatch(mirror.name, count, mirror.percent or 100,
                                              step.requests, step.tolerance_stddevs))
    return "; ".join(item for item in problems if item) or None


PERCENT_MIRROR_PAUSE = 2.0  # the Go test sleeps 2 s after each failed distribution check


def _distribution(harness: GatewayHarness, address: str, original: ExpectedResponse,
                  step: PercentMirror) -> str | None:
    """Up to `step.checks` rounds, each with a new request id, until one's counts hold."""
    problem = None
    for check in range(step.checks):
        try:
            problem = _mirror_round(harness, address, with_request_id(original), step)
        except _RequestFailed as failed:
            return str(failed)
        if problem is None:
            return None
        problem = f"check {check + 1}/{step.checks}: {problem}"
        time.sleep(PERCENT_MIRROR_PAUSE)
    return f"percentage based mirror distribution tests failed (last {problem})"


def percent_mirror(harness: GatewayHarness, context: Context, step: PercentMirror
                   ) -> str | None:
    """HTTPRouteRequestPercentageMirror, per case: consistent first, then the distribution
    checks."""
    address = harness.gateway_address(step.gateway)
    for index, original in enumerate(step.cases):
        problem = harness.converge(lambda case=original: harness.round_trip("http", address,
                                                                            case))
        if problem is None:
            problem = _distribution(harness, address, original, step)
        if problem is not None:
            return f"{original.name(index)}: {problem}"
    return None


def retry_request(step: RetryProbe) -> ExpectedResponse:
    """assertConsistentRetryBehaviour's probe: the path with the simulation's parameters and a
    fresh `uuid` (url.Values.Encode: keys sorted), answered by `step.backend` as
    `step.response` says."""
    values = {**step.simulation, "uuid": str(uuid.uuid4())}
    path = f"{step.path}?{urlencode(sorted(values.items()))}"
    return ExpectedResponse(request=Request(path=path), response=step.response,
                            backend=step.backend, namespace=step.namespace)


def retry_probe(harness: GatewayHarness, context: Context, step: RetryProbe) -> str | None:
    """Each probe a new uuid, so that the echo backend counts its attempts apart; converged
    as http.AwaitConvergence does (REQUIRED_SUCCESSES in a row)."""
    address = harness.gateway_address(step.gateway)
    problem = harness.converge(lambda: harness.round_trip("http", address,
                                                          retry_request(step)))
    return None if problem is None else f"request to '{step.path}' {step.name}: {problem}"


WEBSOCKET_SUBTEST = "websocket_connection_should_reach_backend"  # t.Name()'s last part


def websocket_step(harness: GatewayHarness, context: Context, step: WebSocketEcho
                   ) -> str | None:
    """HTTPRouteBackendProtocolWebSocket: dial ws://ADDRESS/ws with the Origin
    ws://gateway/<t.Name()>, a text frame then a binary frame each echoed back; converged."""
    address = harness.gateway_address(step.gateway)
    origin = f"ws://gateway/TestConformance/{context.test.short_name}/{WEBSOCKET_SUBTEST}"
    messages = (Frame(TEXT, step.text.encode()), Frame(BINARY, step.binary))
    return harness.converge(lambda: websocket_echo(address, step.path, origin, messages))


def gateway_address_step(harness: GatewayHarness, context: Context, step: GatewayAddress
                         ) -> str | None:
    """WaitForGatewayAddress alone: the Gateway exists (its proxy started, at its address)."""
    harness.gateway_address(step.gateway)
    return None


def policy_condition(harness: GatewayHarness, context: Context, step: PolicyCondition
                     ) -> str | None:
    """BackendTLSPolicyMustHaveCondition: every ancestor's conditions at the latest
    generation, and the Gateway's ancestor entry (namespace unset or equal) has the
    condition."""
    def check() -> str | None:
        found = harness.get(step.kind, step.policy)
        if found is None:
            return f"{step.kind} {step.policy} not found"
        generation = found["metadata"].get("generation")
        for ancestor in found.get("status", {}).get("ancestors", ()):
            if any(cond.get("observedGeneration") != generation
                   for cond in ancestor.get("conditions", ())):
                return f"ancestor {ancestor.get('ancestorRef')}: conditions not at {generation}"
            ref = ancestor.get("ancestorRef", {})
            if ref.get("name") == step.gateway.name and ref.get("namespace") in (
                    None, step.gateway.namespace) and condition_mismatch(
                    step.condition, ancestor.get("conditions", ())) is None:
                return None
        return f"no ancestor {step.gateway} with {step.condition}"
    return harness.eventually(check)


# ---- updates: the Go tests' client.Update/Patch calls, translated per test ---------------------

def _backend_name(harness: GatewayHarness, context: Context, step: Update,
                  document: dict[str, Any]) -> str | None:
    for path, value in step.change.items():
        if path != "spec.rules[0].backendRefs[0].name":
            return f"unknown change {path}"
        document["spec"]["rules"][0]["backendRefs"][0]["name"] = value
    return None


def _fill_endpoint_slice(harness: GatewayHarness, context: Context, step: Update,
                         document: dict[str, Any]) -> str | None:
    """setupEndpointSlices: the IPv4 slices get infra-backend-v1's pod addresses (here the
    sidecar's instance address, where the pod's port 3000 is served); IPv6 slices are left
    alone, the pods having no IPv6 address."""
    if document.get("addressType") != "IPv4":
        return None
    pod = harness.pod("infra-backend-v1")
    document["endpoints"] = [{"addresses": [pod.instance_ip],
                              "conditions": {"ready": True, "serving": True,
                                             "terminating": False},
                              "targetRef": {"kind": "Pod", "name": pod.name,
                                            "namespace": pod.namespace}}]
    return None


def _add_listener(listener: dict[str, Any]) -> Callable[..., str | None]:
    def change(harness: GatewayHarness, context: Context, step: Update,
               document: dict[str, Any]) -> str | None:
        document["spec"]["listeners"].append(listener)
        return None
    return change


def _keep_http_listener(harness: GatewayHarness, context: Context, step: Update,
                        document: dict[str, Any]) -> str | None:
    listeners = document["spec"]["listeners"]
    if len(listeners) != 2:
        return f"expected 2 listeners before the update, got {len(listeners)}"
    document["spec"]["listeners"] = [item for item in listeners if item["name"] == "http"]
    return None


def _gateway_listeners(harness: GatewayHarness, context: Context, step: Update,
                       document: dict[str, Any]) -> str | None:
    if step.name.name == "gateway-add-listener":
        return _add_listener({"name": "http", "port": 80, "protocol": "HTTP",
                              "hostname": "data.test.com",
                              "allowedRoutes": {"namespaces": {"from": "All"}}})(
            harness, context, step, document)
    if step.name.name == "gateway-remove-listener":
        return _keep_http_listener(harness, context, step, document)
    return f"unknown Gateway {step.name}"


def _description(harness: GatewayHarness, context: Context, step: Update,
                 document: dict[str, Any]) -> str | None:
    document["spec"]["description"] = step.change["spec.description"]
    return None


def _ca_refs(harness: GatewayHarness, context: Context, step: Update,
             document: dict[str, Any]) -> str | None:
    """The reconcile subtest's patches of the policy's caCertificateRefs: to a ConfigMap of
    its own, then back to the refs it had (`{the original refs}`)."""
    refs = step.change["spec.validation.caCertificateRefs"]
    validation = document["spec"]["validation"]
    key = ("caCertificateRefs", step.name)
    if refs == "{the original refs}":
        if key not in context.saved:
            return "no caCertificateRefs were saved to restore"
        validation["caCertificateRefs"] = context.saved.pop(key)
        return None
    context.saved.setdefault(key, validation.get("caCertificateRefs"))
    validation["caCertificateRefs"] = refs
    return None


def _config_map_ca(harness: GatewayHarness, context: Context, step: Update,
                   document: dict[str, Any]) -> str | None:
    """patchConfigMapCACert: the ConfigMap's `ca.crt` set (emptied, or a suite CA again)."""
    document.setdefault("data", {})["ca.crt"] = harness.filled(step.change["data.ca.crt"],
                                                               step.name.namespace)
    return None


def _policy_hostname(harness: GatewayHarness, context: Context, step: Update,
                     document: dict[str, Any]) -> str | None:
    document["spec"]["validation"]["hostname"] = step.change["spec.validation.hostname"]
    return None


def _static_addresses(harness: GatewayHarness, context: Context, step: Update,
                      document: dict[str, Any]) -> str | None:
    """gateway-static-addresses.go's patches: spec.addresses without the entries the change
    names by their index in the Gateway's original spec.addresses (filterAddr)."""
    original = context.saved.setdefault(("addresses", step.name),
                                        list(document["spec"].get("addresses", ())))
    document["spec"]["addresses"] = without(document["spec"].get("addresses", ()), original,
                                            step.change["spec.addresses"])
    return None


def status_addresses(harness: GatewayHarness, context: Context, step: StatusAddresses
                     ) -> str | None:
    """The end of GatewayStaticAddresses: status.addresses against the original spec's."""
    original = context.saved.get(("addresses", step.gateway))
    if original is None:
        return "no spec.addresses recorded by an earlier Update"

    def check() -> str | None:
        status = harness._status("Gateway", step.gateway)
        if isinstance(status, str):
            return status
        return status_addresses_mismatch(status.get("addresses", ()), original, step.count,
                                         step.present, step.absent)
    return harness.eventually(check)


UPDATES: dict[tuple[str, str], Callable[..., str | None]] = {
    ("GatewayStaticAddresses", "Gateway"): _static_addresses,
    ("BackendTLSPolicy", "BackendTLSPolicy"): _ca_refs,
    ("BackendTLSPolicy", "ConfigMap"): _config_map_ca,
    ("BackendTLSPolicyObservedGenerationBump", "BackendTLSPolicy"): _policy_hostname,
    ("HTTPRouteObservedGenerationBump", "HTTPRoute"): _backend_name,
    ("HTTPRouteServiceTypes", "EndpointSlice"): _fill_endpoint_slice,
    ("GatewayModifyListeners", "Gateway"): _gateway_listeners,
    ("GatewayObservedGenerationBump", "Gateway"): _add_listener(
        {"name": "alternate", "hostname": "foo.com", "port": 80, "protocol": "HTTP",
         "allowedRoutes": {"namespaces": {"from": "All"}}}),
    ("GatewayClassObservedGenerationBump", "GatewayClass"): _description,
}

STEP_HANDLERS: dict[type, Callable[..., str | None]] = {
    RoutesAccepted: GatewayHarness.routes_accepted,
    RouteCondition: GatewayHarness.route_condition,
    RouteParents: GatewayHarness.route_parents,
    RouteNoAcceptedParents: GatewayHarness.no_accepted_parents,
    GatewayListeners: GatewayHarness.gateway_listeners,
    GatewayCondition: GatewayHarness.gateway_condition,
    ListenersConditions: GatewayHarness.listeners_conditions,
    GatewayZeroRoutes: GatewayHarness.zero_routes,
    AttachedListeners: GatewayHarness.attached_listeners,
    LatestConditions: GatewayHarness.latest_conditions,
    ObservedGenerationBumped: GatewayHarness.generation_bumped,
    GatewayClassAccepted: GatewayHarness.class_accepted,
    NamespacesReady: GatewayHarness.namespaces_ready,
    Apply: GatewayHarness.apply_step,
    Delete: GatewayHarness.delete_step,
    Update: GatewayHarness.update_step,
    Create: GatewayHarness.create_step,
    GatewayExchanges: GatewayHarness.exchanges,
    GatewayWeighted: GatewayHarness.weighted,
    BackendHeaderNamesPod: backend_header_names_pod,
    GatewayGRPCExchanges: grpc_exchanges,
    MirrorExchanges: mirror_exchanges,
    RetryProbe: retry_probe,
    PercentMirror: percent_mirror,
    WebSocketEcho: websocket_step,
    GatewayAddress: gateway_address_step,
    StatusAddresses: status_addresses,
    PolicyCondition: policy_condition,
    TLSExchange: tls_exchange,
    TLSRejected: tls_rejected,
    TLSStream: tls_stream,
}


def run_all(tests: Sequence[GatewayConformanceTest], **options: Any) -> Iterator[Outcome]:
    with GatewayHarness(**options) as harness:
        for test in tests:
            yield harness.run(test)
