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
import datetime
import gc
import ipaddress
import logging
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
from controlplane.api import runtime as api
from controlplane.api.mirror import StoreMirror
from controlplane.ca import (
    DEFAULT_TRUST_DOMAIN,
    CaError,
    CertificateAuthority,
    IdentitySecrets,
    keeper,
)
from controlplane.ca.admission import XdsAdmission
from controlplane.ca.certificates import CertificateService
from controlplane.ca.renewal import keep_renewing, parse_duration
from controlplane.ca.serving import ServingCertificate
from controlplane.cache import SnapshotCache
from controlplane.fanout import DEFAULT_BUDGET, DEFAULT_DEBOUNCE_AFTER, DEFAULT_DEBOUNCE_MAX, Pacer
from controlplane.mesh.identity import MeshIdentity
from controlplane.observe import Observer
from controlplane.resources import PUSH_ORDER
from controlplane.server import DiscoveryServer
from controlplane.sources.files import FileSource, load_snapshots
from controlplane.sources.mesh import MeshCache, MeshSource
from controlplane.store import StoreError
from controlplane.transport.h2_server import H2Server
from protos.cli_help import DefaultsHelpFormatter
from protos.errors import ConfigError

DEFAULT_LISTEN = "127.0.0.1:18000"
DEFAULT_STORE = "file:pointsman.state"  # in the working folder, as etcd's default.etcd
# gRPC core holds a new call until the application asks for it, and the asyncio server asks
# from its event loop, one call at a time. In a storm of new streams the loop is busy writing
# responses, and calls wait in core: one held longer than `server_max_unrequested_time_in_server`
# (30 s) is cancelled, before any response, when the next call arrives. The sidecars saw
# CANCELLED (and INTERNAL when they wrote on the cancelled call) from 3,000 streams on
# (tests/integration/controlplane/test_storm.py reproduces it). gRPC's newer call path also
# refuses calls at random past 1,000 held (`max_pending_requests`) and always past 3,000. A new
# stream now waits its turn instead; the pacer (controlplane/fanout.py) keeps the loop free
# enough to take it. (grpc src/core/server/server.cc, include/grpc/impl/channel_arg_names.h.)
INT_MAX = 2**31 - 1
STORM_OPTIONS = (
    ("grpc.server.max_pending_requests", INT_MAX),
    ("grpc.server.max_pending_requests_hard_limit", INT_MAX),
    ("grpc.server_max_unrequested_time_in_server", 24 * 3600),
)
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
    *STORM_OPTIONS,
)


def server_options(*, reuseport: bool = False) -> tuple[tuple[str, int], ...]:
    """SERVER_OPTIONS; a worker of `--workers N` shares --listen with its siblings."""
    if not reuseport:
        return SERVER_OPTIONS
    return (*(item for item in SERVER_OPTIONS if item[0] != "grpc.so_reuseport"),
            ("grpc.so_reuseport", 1))


class ListenError(Exception):
    """An address from the command line cannot be listened on."""

    def __init__(self, setting: str, value: str, reason: str) -> None:
        super().__init__(f"{setting} {value}: cannot listen: {reason}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pointsman controlplane",
                                     description="Pointsman's xDS control plane (ADS and per-type "
                                                 "services, state of the world and delta).",
                                     formatter_class=DefaultsHelpFormatter)
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
    parser.add_argument("--tls", action="store_true",
                        help="serve xDS over TLS with a certificate from the mesh CA, renewed "
                             "at half life (sidecars trust the mesh's root: docs/security.md)")
    parser.add_argument("--tls-name", action="append", default=[], metavar="NAME",
                        help="--tls: a DNS name or IP address sidecars reach this control "
                             "plane by (repeatable; default the --listen host and localhost)")
    parser.add_argument("--ca-listen", metavar="HOST:PORT",
                        help="--tls: also serve the certificate service alone on this address, "
                             "over server TLS without a client certificate: where sidecars "
                             "trade their join token for their first certificate when --listen "
                             "requires mTLS (off loopback; docs/security.md)")
    parser.add_argument("--ca-cert", type=Path,
                        help="the mesh CA's certificate (PEM; an intermediate first, then its "
                             "chain up to the root): sign SVIDs with it instead of the store's "
                             "own root (docs/security.md)")
    parser.add_argument("--ca-key", type=Path, help="the mesh CA's private key (PEM)")
    parser.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN,
                        help="SPIFFE trust domain of the SVIDs (spiffe://DOMAIN/ns/NS/sa/SVC)")
    parser.add_argument("--cert-lifetime", default="24h", metavar="DURATION",
                        help="SVID lifetime (s, m, h, d); renewed at half life")
    parser.add_argument("--allow-plaintext", action="store_true",
                        help="serve without TLS on a non-loopback address (Secrets travel "
                             "in clear text: only for trusted networks)")
    parser.add_argument("--poll-interval", type=float, default=0.5, help="seconds between scans")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"], help="log level")
    parser.add_argument("--full-state-updates", action="store_true",
                        help="SotW: resend every subscribed EDS/RDS/SDS resource on a change "
                             "(default: only the changed ones, as xDS allows)")
    parser.add_argument("--debounce-after", type=float, default=DEFAULT_DEBOUNCE_AFTER,
                        metavar="SECONDS", help="push a burst of changes this long after its "
                                                "last change (0: at once)")
    parser.add_argument("--debounce-max", type=float, default=DEFAULT_DEBOUNCE_MAX,
                        metavar="SECONDS", help="...and no later than this after its first")
    parser.add_argument("--push-budget", type=int, default=DEFAULT_BUDGET // 2**20,
                        metavar="MIB", help="response bytes being written at once")
    parser.add_argument("--xds-transport", choices=["auto", "native", "grpcio"],
                        default="auto",
                        help="serve xDS with Pointsman's own HTTP/2 on the event loop "
                             "(native: plaintext only) or with grpcio; auto: native unless "
                             "xDS is served over TLS (docs/controlplane.md)")
    parser.add_argument("--workers", type=int, default=1,
                        help="serve xDS from this many worker processes sharing --listen "
                             "(SO_REUSEPORT); this process loads the configuration")
    parser.add_argument("--check", action="store_true",
                        help="validate --resources, print what each node group gets, and exit")
    api.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.resources is None and args.mesh is None and args.store is None:
        args.store = DEFAULT_STORE  # the mesh API over the default file store
    api.check_arguments(parser, args, is_loopback, split_address)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if bool(args.ca_cert) != bool(args.ca_key):
        parser.error("--ca-cert and --ca-key go together")
    try:
        args.cert_lifetime = parse_duration(args.cert_lifetime)
    except ValueError as error:
        parser.error(f"--cert-lifetime: {error}")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.workers > 1 and args.mesh is not None:
        # Worker processes replay the parent's commits (cache/replication.py); a mesh view is
        # compiled when its node connects, which happens in a worker: not wired yet.
        parser.error("--workers N with --mesh is not supported yet: serve --mesh with one "
                     "process (the default)")
    if args.workers > 1 and args.store is not None:
        parser.error("--workers N with the mesh API (--store) is not supported yet: serve it "
                     "with one process (the default)")
    if args.tls and args.tls_cert:
        parser.error("--tls (a certificate from the mesh CA) and --tls-cert exclude each other")
    if args.tls and args.workers > 1:
        parser.error("--tls with --workers N is not supported yet: give --tls-cert/--tls-key")
    if args.tls and args.store is None and args.ca_cert is None:
        parser.error("--tls needs the mesh CA: --store (its root) or --ca-cert/--ca-key")
    if args.xds_transport == "native" and (args.tls or args.tls_cert):
        parser.error("--xds-transport native serves plaintext only: --tls and --tls-cert need "
                     "--xds-transport grpcio (or auto, the default)")
    if args.xds_transport == "auto":
        args.xds_transport = "grpcio" if args.tls or args.tls_cert else "native"
    if args.ca_listen and not args.tls:
        parser.error("--ca-listen needs --tls (the certificate service speaks TLS with the mesh "
                     "CA's certificate)")
    if args.require_join_token and args.store is None:
        parser.error("--require-join-token needs --store (tokens are kept there)")
    if args.client_ca and not args.tls_cert:
        parser.error("--client-ca needs --tls-cert and --tls-key")
    host, _ = split_address(args.listen)
    if not (args.tls_cert or args.tls) and not is_loopback(host) and not args.allow_plaintext:
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
    return read_credentials(args.tls_cert, args.tls_key, args.client_ca)


def read_credentials(cert: str | Path, key: str | Path,
                     client_ca: str | Path | None) -> grpc.ServerCredentials:
    ca = Path(client_ca).read_bytes() if client_ca else None
    return grpc.ssl_server_credentials([(Path(key).read_bytes(), Path(cert).read_bytes())],
                                       root_certificates=ca, require_client_auth=ca is not None)


def tune_garbage_collector() -> None:
    """Once the configuration is loaded: freeze what start-up made (modules, descriptors, the
    first configuration) out of the cyclic collector's sight and run its young generation
    less often. Requests and responses are freed by reference counting; with thousands of
    streams alive, frequent passes cost 5-7% of the CPU of a connection storm (perf)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def telemetry_from_environment() -> Any:
    """OpenTelemetry push spans/metrics when OTEL_* is set; imported only then (it is heavy)."""
    if not any(key.startswith("OTEL_") for key in os.environ):
        return None
    from proxy.observability.controlplane import ControlPlaneTelemetry
    return ControlPlaneTelemetry.from_environment()


def bind(server: grpc.aio.Server, args: argparse.Namespace,
         authority: CertificateAuthority | None = None) -> str:
    """Add the xDS port (TLS when configured; `--tls`: a certificate from `authority`);
    returns the address actually bound. Raises ListenError naming `--listen` when the
    address is taken (or otherwise refused)."""
    credentials = server_credentials(args)
    if args.tls and authority is not None:
        credentials = ServingCertificate(authority, tls_names(args),
                                         mutual=xds_mutual_tls(args)).credentials()
    host, port = split_address(args.listen)
    check_free(host, port, "--listen", args.listen)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = (server.add_secure_port(target, credentials) if credentials
                 else server.add_insecure_port(target))
    except RuntimeError as error:  # taken since check_free, say; gRPC logs its reason
        raise ListenError("--listen", args.listen, "gRPC could not bind it") from error
    return f"{host}:{bound}"


async def bind_native(server: H2Server, args: argparse.Namespace) -> str:
    """`--xds-transport native`: listen on --listen (ListenError naming it when refused)."""
    host, port = split_address(args.listen)
    check_free(host, port, "--listen", args.listen)
    try:
        bound = await server.start(host, port)
    except OSError as error:
        raise ListenError("--listen", args.listen, error.strerror or str(error)) from error
    return f"{host}:{bound}"


def xds_mutual_tls(args: argparse.Namespace) -> bool:
    """`--tls` off loopback: xDS requires a client certificate from the mesh CA. On loopback
    only local processes reach the port, and a sidecar proves itself with a join token
    (docs/mesh-security.md, "The xDS trust model")."""
    return bool(args.tls) and not is_loopback(split_address(args.listen)[0])


def bind_certificates(server: grpc.aio.Server | None, args: argparse.Namespace,
                      authority: CertificateAuthority | None) -> str | None:
    """`--ca-listen`: the certificate service's own port (server TLS only)."""
    if server is None or authority is None:
        return None
    host, port = split_address(args.ca_listen)
    check_free(host, port, "--ca-listen", args.ca_listen)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    names = tls_names(args)
    if not args.tls_name and host not in ("", "0.0.0.0", "::"):
        names = tuple(dict.fromkeys([*names, host]))  # sidecars reach it by this address
    credentials = ServingCertificate(authority, names).credentials()
    try:
        bound = server.add_secure_port(target, credentials)
    except RuntimeError as error:
        raise ListenError("--ca-listen", args.ca_listen, "gRPC could not bind it") from error
    return f"{host}:{bound}"


def tls_names(args: argparse.Namespace) -> tuple[str, ...]:
    """The names the --tls certificate carries: --tls-name, else the --listen host (unless a
    wildcard) and localhost."""
    if args.tls_name:
        return tuple(args.tls_name)
    host, _ = split_address(args.listen)
    names = [] if host in ("", "0.0.0.0", "::") else [host]
    return tuple(dict.fromkeys([*names, "localhost"]))


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


def bind_api(runtime: api.ApiRuntime | None, args: argparse.Namespace) -> int | None:
    if runtime is None:
        return None
    host, port = split_address(args.api)
    try:
        return runtime.server.bind(host, port)
    except RuntimeError as error:
        raise ListenError("--api", args.api, "gRPC could not bind it") from error


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
    if args.store:
        check_free(*split_address(args.api), "--api", args.api)
    cache: SnapshotCache = (api.mesh_cache() if args.store
                            else MeshCache() if args.mesh else SnapshotCache())
    telemetry = telemetry_from_environment()
    hooks: tuple[Any, ...] = (telemetry,) if telemetry is not None else ()
    if isinstance(cache, MeshCache):
        hooks += (cache,)  # sidecars register as endpoints of their Service
    observer = Observer(cache, hooks=hooks)
    sources: list[FileSource | MeshSource | StoreMirror] = []
    if args.resources:
        sources.append(FileSource(args.resources, cache, interval=args.poll_interval,
                                  on_error=observer.config_rejected))
    if args.mesh and isinstance(cache, MeshCache):
        sources.append(MeshSource(args.mesh, cache, interval=args.poll_interval,
                                  on_error=observer.config_rejected))
    runtime = None
    if args.store and isinstance(cache, api.SharedEndpointsCache):
        runtime = await api.open_api(args, cache, observer, server_credentials(args))
        sources.append(runtime.mirror)

    authority = await open_authority(args, runtime)
    if authority is not None and isinstance(cache, MeshCache):
        cache.identity_secrets = IdentitySecrets(authority)
        cache.use_identity(MeshIdentity(authority.trust_domain))  # automatic mTLS

    def loaded() -> None:
        if isinstance(cache, MeshCache) and cache.last_change in ("endpoints", "secrets"):
            return  # a sidecar came or went (logged as mesh_endpoint_*), or an SVID renewed
        resources = sum(item.count() for item in cache.groups.values())
        if isinstance(cache, MeshCache):
            resources += len(cache.mesh.objects)  # mesh objects, before compilation
        observer.config_loaded(len(cache.groups), resources)
    cache.watch(loaded)
    for source in sources:
        if not await source.poll_in_thread():
            print(f"pointsman controlplane: {source.last_error}", file=sys.stderr)
            if runtime is not None:
                await runtime.close()
            return 1
    tune_garbage_collector()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        if args.workers > 1:
            return await serve_workers(args, cache, observer, sources, stop)
        return await serve_here(args, cache, observer, sources, stop, runtime, authority)
    finally:
        if runtime is not None:
            await runtime.close()
        if telemetry is not None:
            telemetry.close()


async def open_authority(args: argparse.Namespace, runtime: api.ApiRuntime | None
                         ) -> CertificateAuthority | None:
    """The mesh CA: the operator's (--ca-cert/--ca-key), else the store's root (made at the
    first start). With neither (--mesh or --resources alone) no SVIDs are issued."""
    options = {"trust_domain": args.trust_domain, "lifetime": args.cert_lifetime}
    try:
        if args.ca_cert:
            return keeper.from_files(args.ca_cert, args.ca_key, **options)
        if runtime is not None:
            return await keeper.from_store(runtime.store, datetime.datetime.now(datetime.UTC),
                                           **options)
    except CaError as error:
        if runtime is not None:
            await runtime.close()
        raise ConfigError(str(error)) from error
    logs.event("ca_off", reason="no --store and no --ca-cert: no SVIDs are issued")
    return None


def pacer_of(args: argparse.Namespace) -> Pacer:
    return Pacer(budget=max(1, args.push_budget) * 2**20,
                 debounce_after=max(0.0, args.debounce_after),
                 debounce_max=max(0.0, args.debounce_max))


async def serve_here(args: argparse.Namespace, cache: SnapshotCache, observer: Observer,
                     sources: list[FileSource | MeshSource | StoreMirror], stop: asyncio.Event,
                     runtime: api.ApiRuntime | None = None,
                     authority: CertificateAuthority | None = None) -> int:
    """One process serves xDS (the default), and the mesh API with a store."""
    discovery = DiscoveryServer(cache, observer, pacer_of(args),
                                partial_updates=not args.full_state_updates,
                                admission=admission_of(args, runtime, authority, observer))
    native = args.xds_transport == "native"
    server = None if native else grpc.aio.server(options=SERVER_OPTIONS)
    methods = discovery.methods() if native else {}
    if server is not None:
        server.add_generic_rpc_handlers(discovery.generic_handlers())
    ca_server = None
    if authority is not None:
        certificates = CertificateService(
            authority, runtime.tokens.book if runtime is not None else None,
            trust_peers=xds_mutual_tls(args), counted=observer.certificate_answered)
        if server is not None:
            server.add_generic_rpc_handlers([certificates.handler()])
        else:
            methods.update(certificates.methods())
        if args.ca_listen:
            ca_server = grpc.aio.server()
            ca_server.add_generic_rpc_handlers([certificates.handler()])
    native_server = H2Server(methods) if native else None
    admin = AdminServer(observer, ready=lambda: all(item.loads > 0 for item in sources))
    try:
        if native_server is not None:
            listen = await bind_native(native_server, args)
        else:
            assert server is not None
            listen = bind(server, args, authority)
        ca_listen = bind_certificates(ca_server, args, authority)
        admin_port = await start_admin(admin, args.admin)
        api_port = bind_api(runtime, args)
        if server is not None:
            await server.start()
        if ca_server is not None:
            await ca_server.start()
        if runtime is not None:
            await runtime.server.start()
        warn_without_ca_listen(args)
        logs.event("serving", listen=listen, admin_port=admin_port, ca_listen=ca_listen,
                   tls=bool(args.tls_cert or args.tls),
                   mutual_tls=bool(args.client_ca) or xds_mutual_tls(args),
                   api=f"{split_address(args.api)[0]}:{api_port}" if api_port else None,
                   store=args.store)
        async with asyncio.TaskGroup() as tasks:
            watchers = [tasks.create_task(source.run()) for source in sources]
            if runtime is not None:
                watchers.append(tasks.create_task(runtime.run()))
            if isinstance(cache, MeshCache) and cache.identity_secrets is not None:
                watchers.append(tasks.create_task(keep_renewing(cache)))
            await stop.wait()
            for watcher in watchers:
                watcher.cancel()
    finally:
        await admin.close()
        if server is not None:
            await server.stop(grace=1.0)
        if native_server is not None:
            await native_server.close()
        if ca_server is not None:
            await ca_server.stop(grace=1.0)
    return 0


def warn_without_ca_listen(args: argparse.Namespace) -> None:
    if xds_mutual_tls(args) and not args.ca_listen:
        logs.event("ca_listen_off", logging.WARNING,
                   reason=f"--listen {args.listen} requires client certificates and no "
                          "--ca-listen is given: a join token cannot get a sidecar its first "
                          "certificate (give sidecars --xds-cert/--xds-key)")


def admission_of(args: argparse.Namespace, runtime: api.ApiRuntime | None,
                 authority: CertificateAuthority | None, observer: Observer
                 ) -> XdsAdmission | None:
    """Streams over mTLS are bound to their certificate's identity; others need a join token
    with --require-join-token; with neither a CA nor tokens every node is believed."""
    tokens = runtime.tokens if runtime is not None and args.require_join_token else None
    bind = authority is not None and xds_mutual_tls(args)
    if not bind and tokens is None:
        return None
    domain = authority.trust_domain if authority is not None else args.trust_domain
    return XdsAdmission(domain, tokens, refused=observer.stream_refused, bind=bind)


async def serve_workers(args: argparse.Namespace, cache: SnapshotCache, observer: Observer,
                        sources: list[FileSource | MeshSource | StoreMirror],
                        stop: asyncio.Event) -> int:
    """`--workers N`: this process loads the configuration and serves the admin endpoint;
    N worker processes serve xDS on --listen (controlplane/workers.py)."""
    from controlplane.workers import WorkerPool, WorkerSpec

    specs = [WorkerSpec(index, args.listen, _text(args.tls_cert), _text(args.tls_key),
                        _text(args.client_ca), args.log_level,
                        max(1, args.push_budget) * 2**20, max(0.0, args.debounce_after),
                        max(0.0, args.debounce_max), not args.full_state_updates,
                        args.xds_transport == "native")
             for index in range(args.workers)]
    pool = WorkerPool(specs, cache)
    admin = AdminServer(observer, ready=lambda: all(item.loads > 0 for item in sources),
                        workers=pool)
    try:
        await pool.start()
        admin_port = await start_admin(admin, args.admin)
        logs.event("serving", listen=args.listen, admin_port=admin_port, workers=args.workers,
                   tls=bool(args.tls_cert), mutual_tls=bool(args.client_ca))
        assert pool.failed is not None
        async with asyncio.TaskGroup() as tasks:
            watchers = [tasks.create_task(source.run()) for source in sources]
            stopping = tasks.create_task(stop.wait())
            waits: list[asyncio.Future[Any]] = [stopping, pool.failed]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for watcher in watchers:
                watcher.cancel()
            stopping.cancel()
        if pool.failed.done():
            print(f"pointsman controlplane: {pool.failed.result()}", file=sys.stderr)
            return 1
    finally:
        await admin.close()
        await pool.close()
    return 0


def _text(path: Path | None) -> str | None:
    return str(path) if path else None


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
    except (ConfigError, ListenError, StoreError) as error:
        print(f"pointsman controlplane: {error}", file=sys.stderr)
        return 1
