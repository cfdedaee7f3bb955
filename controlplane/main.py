"""`pointsman controlplane (--resources PATH | --mesh PATH) [--listen HOST:PORT]
[--admin HOST:PORT] [--tls-cert FILE --tls-key FILE [--client-ca FILE]]`.

`--mesh PATH` serves mesh objects (Services, Gateway API routes, policies; docs/mesh.md),
compiled per sidecar; `--resources PATH` raw Envoy resources per node group. Both may be
given: mesh members get the compiled mesh, other nodes the raw resources.

An address that cannot be listened on ends the start-up with exit 1 and one line naming the
setting, `pointsman controlplane: --listen 127.0.0.1:18000: cannot listen: Address already in
use`, before anything serves. gRPC's SO_REUSEPORT is off: with it, a second control plane on
the same `--listen` started too and the kernel split the sidecars between the two.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import signal
import socket
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import grpc

from controlplane import logs
from controlplane.admin import AdminServer
from controlplane.cache import SnapshotCache
from controlplane.observe import Observer
from controlplane.resources import PUSH_ORDER
from controlplane.server import DiscoveryServer
from controlplane.sources.files import FileSource, load_snapshots
from controlplane.sources.mesh import MeshCache, MeshSource
from protos.errors import ConfigError

DEFAULT_LISTEN = "127.0.0.1:18000"
SERVER_OPTIONS = (
    # Find dead peers (a node that vanished without closing) so they leave /status.
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    # Accept clients' own keepalive pings down to every 10 s (Envoy's grpc_service keepalive)
    # instead of answering them with GOAWAY "too_many_pings".
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # A node may subscribe to many names at once (EDS for every cluster).
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # One control plane per address: a second one on the same --listen must fail to start,
    # not share the port and split the sidecars between two configurations.
    ("grpc.so_reuseport", 0),
)


class ListenError(Exception):
    """An address from the command line cannot be listened on."""

    def __init__(self, setting: str, value: str, reason: str) -> None:
        super().__init__(f"{setting} {value}: cannot listen: {reason}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pointsman controlplane",
                                     description="Pointsman's xDS control plane (ADS and per-type "
                                                 "services, state of the world and delta).")
    parser.add_argument("--resources", type=Path,
                        help="YAML/JSON file or folder of Envoy filesystem-subscription files")
    parser.add_argument("--mesh", type=Path,
                        help="YAML file or folder of mesh objects (Services, Gateway API "
                             "routes, policies), compiled per sidecar (docs/mesh.md)")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, help="xDS gRPC address HOST:PORT")
    parser.add_argument("--admin", default=None, help="admin HTTP address HOST:PORT (optional)")
    parser.add_argument("--tls-cert", type=Path, help="server certificate (PEM): serve over TLS")
    parser.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    parser.add_argument("--client-ca", type=Path,
                        help="CA bundle (PEM): require client certificates (mutual TLS)")
    parser.add_argument("--allow-plaintext", action="store_true",
                        help="serve without TLS on a non-loopback address (Secrets travel "
                             "in clear text: only for trusted networks)")
    parser.add_argument("--poll-interval", type=float, default=0.5, help="seconds between scans")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--check", action="store_true",
                        help="validate --resources, print what each node group gets, and exit")
    args = parser.parse_args(argv)
    if args.resources is None and args.mesh is None:
        parser.error("give --resources PATH, --mesh PATH or both")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.client_ca and not args.tls_cert:
        parser.error("--client-ca needs --tls-cert and --tls-key")
    host, _ = split_address(args.listen)
    if not args.tls_cert and not is_loopback(host) and not args.allow_plaintext:
        parser.error(f"--listen {args.listen} is not loopback: give --tls-cert/--tls-key "
                     "(Secrets must not travel in clear text) or --allow-plaintext")
    return args


def split_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(f"pointsman controlplane: bad address {value!r}, expected HOST:PORT")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_credentials(args: argparse.Namespace) -> grpc.ServerCredentials | None:
    if not args.tls_cert:
        return None
    ca = args.client_ca.read_bytes() if args.client_ca else None
    return grpc.ssl_server_credentials(
        [(args.tls_key.read_bytes(), args.tls_cert.read_bytes())],
        root_certificates=ca, require_client_auth=ca is not None)


def telemetry_from_environment() -> Any:
    """OpenTelemetry push spans/metrics when OTEL_* is set; imported only then (it is heavy)."""
    if not any(key.startswith("OTEL_") for key in os.environ):
        return None
    from proxy.observability.controlplane import ControlPlaneTelemetry
    return ControlPlaneTelemetry.from_environment()


def bind(server: grpc.aio.Server, args: argparse.Namespace) -> str:
    """Add the xDS port (TLS when configured); returns the address actually bound. Raises
    ListenError naming `--listen` when the address is taken (or otherwise refused)."""
    credentials = server_credentials(args)
    host, port = split_address(args.listen)
    check_free(host, port, "--listen", args.listen)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = (server.add_secure_port(target, credentials) if credentials
                 else server.add_insecure_port(target))
    except RuntimeError as error:  # taken since check_free, say; gRPC logs its reason
        raise ListenError("--listen", args.listen, "gRPC could not bind it") from error
    return f"{host}:{bound}"


def check_free(host: str, port: int, setting: str, value: str) -> None:
    """Bind (and close) each address `host` resolves to, as the server will: the reason a
    taken address is refused (gRPC's own error does not say), before anything starts."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ListenError(setting, value, str(error.strerror)) from error
    for family, kind, proto, _name, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                raise ListenError(setting, value, os.strerror(error.errno or 0)) from error


async def start_admin(admin: AdminServer, value: str | None) -> int | None:
    if not value:
        return None
    try:
        return await admin.start(*split_address(value))
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise ListenError("--admin", value, reason) from error


async def serve(args: argparse.Namespace) -> int:
    check_free(*split_address(args.listen), "--listen", args.listen)  # before any work
    if args.admin:
        check_free(*split_address(args.admin), "--admin", args.admin)
    cache = MeshCache() if args.mesh else SnapshotCache()
    telemetry = telemetry_from_environment()
    hooks: tuple[Any, ...] = (telemetry,) if telemetry is not None else ()
    if isinstance(cache, MeshCache):
        hooks += (cache,)  # sidecars register as endpoints of their Service
    observer = Observer(cache, hooks=hooks)
    sources: list[FileSource | MeshSource] = []
    if args.resources:
        sources.append(FileSource(args.resources, cache, interval=args.poll_interval,
                                  on_error=observer.config_rejected))
    if isinstance(cache, MeshCache):
        sources.append(MeshSource(args.mesh, cache, interval=args.poll_interval,
                                  on_error=observer.config_rejected))
    def loaded() -> None:
        if isinstance(cache, MeshCache) and cache.last_change == "endpoints":
            return  # a sidecar came or went (logged as mesh_endpoint_*): not a config load
        resources = sum(item.count() for item in cache.groups.values())
        if isinstance(cache, MeshCache):
            resources += len(cache.mesh.objects)  # mesh objects, before compilation
        observer.config_loaded(len(cache.groups), resources)
    cache.watch(loaded)
    for source in sources:
        if not await source.poll_in_thread():
            print(f"pointsman controlplane: {source.last_error}", file=sys.stderr)
            return 1
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers(DiscoveryServer(cache, observer).generic_handlers())
    admin = AdminServer(observer, ready=lambda: all(item.loads > 0 for item in sources))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        listen = bind(server, args)
        admin_port = await start_admin(admin, args.admin)
        await server.start()
        logs.event("serving", listen=listen, admin_port=admin_port,
                   tls=bool(args.tls_cert), mutual_tls=bool(args.client_ca))
        async with asyncio.TaskGroup() as tasks:
            watchers = [tasks.create_task(source.run()) for source in sources]
            await stop.wait()
            for watcher in watchers:
                watcher.cancel()
    finally:
        await admin.close()
        await server.stop(grace=1.0)
        if telemetry is not None:
            telemetry.close()
    return 0


def check(path: Path | None, mesh: Path | None = None) -> int:
    """`--check`: the same validation as serving, then a summary per node group."""
    if mesh is not None:
        source = MeshSource(mesh, MeshCache())
        if not source.poll():
            print(f"pointsman controlplane: {source.last_error}", file=sys.stderr)
            return 1
        kinds = Counter(obj.kind for obj in source.cache.mesh.objects.values())
        print("mesh: " + ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items())))
    if path is None:
        return 0
    try:
        snapshots = load_snapshots(path)
    except ConfigError as error:
        print(f"pointsman controlplane: {error}", file=sys.stderr)
        return 1
    for group, snapshot in sorted(snapshots.items()):
        counts = ", ".join(f"{len(snapshot.of_type(kind.type_url).resources)} "
                           f"{kind.short_name}s" for kind in PUSH_ORDER)
        print(f"{group or '(shared)'}: {counts} (version {snapshot.version})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.check:
        return check(args.resources, args.mesh)
    logs.configure(args.log_level)
    try:
        return asyncio.run(serve(args))
    except (ConfigError, ListenError) as error:
        print(f"pointsman controlplane: {error}", file=sys.stderr)
        return 1
