"""`pointsman controlplane --store URL [--api HOST:PORT]`: the store, its mirror and the
management API put together for controlplane/main.py.

Options: `--store` (file:PATH, a bare PATH, etcd://HOST:PORT[/PREFIX], memory:), `--api`
(default 127.0.0.1:18001), `--api-token-file` (a bearer token every call must carry). Off
loopback the API needs `--client-ca` (mutual TLS, with the xDS port's `--tls-cert/--tls-key`)
or a token (over TLS, or with `--allow-plaintext`).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from controlplane.api.handlers import MeshApi
from controlplane.api.mirror import StoreMirror
from controlplane.api.proxies import ControlPlaneInfo, LocalProxies, ProxyTracker
from controlplane.api.server import ApiServer, ApiService
from controlplane.api.status import StatusView
from controlplane.observe import Observer
from controlplane.sources.mesh import MeshCache
from controlplane.store import Store, StoreError, open_store, parse_store_url

DEFAULT_API = "127.0.0.1:18001"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("mesh API")
    group.add_argument("--store", help="where applied mesh objects live: file:PATH (or PATH), "
                                       "etcd://HOST:PORT[/PREFIX], memory:; serves the "
                                       "management API (pointsman apply, get, status...)")
    group.add_argument("--api", default=DEFAULT_API,
                       help=f"management API address HOST:PORT (default {DEFAULT_API})")
    group.add_argument("--api-token-file", type=Path,
                       help="file holding the bearer token API calls must carry")
    group.add_argument("--replica-id", help="this control plane's name among replicas "
                                            "(default HOSTNAME-PID)")


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace,
                    is_loopback: Any, split: Any) -> None:
    if args.store is None:
        return
    if args.mesh is not None:
        parser.error("--store and --mesh exclude each other (the store holds the mesh)")
    try:
        parse_store_url(args.store)
    except ValueError as error:
        parser.error(f"--store {error}")
    host, _ = split(args.api)
    if is_loopback(host):
        return
    if args.client_ca is None and args.api_token_file is None:
        parser.error(f"--api {args.api} is not loopback: give --client-ca (mutual TLS) or "
                     "--api-token-file (a bearer token)")
    if args.client_ca is None and args.tls_cert is None and not args.allow_plaintext:
        parser.error(f"--api {args.api} is not loopback: a token needs TLS (--tls-cert/"
                     "--tls-key) or --allow-plaintext")


def read_token(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise StoreError(f"--api-token-file {path}: {error}") from error
    if not token:
        raise StoreError(f"--api-token-file {path}: empty")
    return token


@dataclass
class ApiRuntime:
    store: Store
    mirror: StoreMirror
    server: ApiServer
    port: int = 0

    async def close(self) -> None:
        await self.server.close()
        await self.store.close()


async def open_api(args: argparse.Namespace, cache: MeshCache, observer: Observer,
                   credentials: grpc.ServerCredentials | None) -> ApiRuntime:
    """Open the store and build the API (not serving yet: `bind` then `start`). The proxy
    tracker joins the observer's hooks: it sees every stream's ACKs and NACKs."""
    token = read_token(args.api_token_file)
    store = open_store(args.store)
    await store.open()
    mirror = StoreMirror(store, cache, on_error=observer.config_rejected)
    replica = args.replica_id or default_replica_id()
    started = time.time()
    tracker = ProxyTracker(cache, replica, lambda: mirror.revision)
    tracker.attach(observer)
    observer.hooks = (*observer.hooks, tracker)
    proxies = LocalProxies(tracker, lambda: ControlPlaneInfo(
        replica, pointsman_version(), mirror.revision, started))
    service = ApiService(MeshApi(store, mirror), mirror, StatusView(cache, proxies), proxies,
                         token=token)
    return ApiRuntime(store, mirror, ApiServer(service, credentials))


def default_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def pointsman_version() -> str:
    try:
        return importlib.metadata.version("pointsman")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
