"""`pointsman controlplane --store URL [--api HOST:PORT]`: the store, its mirror and the
management API put together for controlplane/main.py.

Options: `--store` (file:PATH, a bare PATH, etcd://HOST:PORT[/PREFIX], memory:), `--api`
(default 127.0.0.1:18001), `--api-token-file` (a bearer token every call must carry). Off
loopback the API needs `--client-ca` (mutual TLS, with the xDS port's `--tls-cert/--tls-key`)
or a token (over TLS, or with `--allow-plaintext`).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from controlplane.api.handlers import MeshApi
from controlplane.api.identity import IdentityApi
from controlplane.api.mirror import StoreMirror
from controlplane.api.proxies import ControlPlaneInfo, ProxyTracker
from controlplane.api.replicas import ReplicaDirectory, SharedEndpointsCache
from controlplane.api.server import ApiServer, ApiService
from controlplane.api.status import StatusView
from controlplane.ca.tokens import JoinTokens, TokenBook
from controlplane.mesh.compile.node import NodeError, node_identity
from controlplane.observe import Observer
from controlplane.store import Store, StoreError, open_store, parse_store_url
from controlplane.store.presence import EtcdPresence, LocalPresence

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
    group.add_argument("--require-join-token", action="store_true",
                       help="a sidecar claiming a Service must present a join token naming "
                            "it (pointsman token create) to be served (docs/security.md)")
    group.add_argument("--lease-ttl", type=int, default=10, metavar="SECONDS",
                       help="etcd store: how long a dead replica's sidecars and status "
                            "outlive it (default 10)")


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
    presence: LocalPresence
    directory: ReplicaDirectory
    tokens: JoinTokens

    async def run(self) -> None:
        """What runs beside serving: sharing with the other replicas."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.presence.run(), name="presence")
            tasks.create_task(self.directory.run(), name="directory")

    async def close(self) -> None:
        await self.server.close()
        await self.presence.close()
        await self.store.close()


def mesh_cache() -> SharedEndpointsCache:
    """The mesh cache of a control plane with a store (endpoints shared by replicas)."""
    return SharedEndpointsCache()


async def open_api(args: argparse.Namespace, cache: SharedEndpointsCache, observer: Observer,
                   credentials: grpc.ServerCredentials | None) -> ApiRuntime:
    """Open the store and build the API (not serving yet: `bind` then `start`). The proxy
    tracker joins the observer's hooks: it sees every stream's ACKs and NACKs."""
    token = read_token(args.api_token_file)
    replica = args.replica_id or default_replica_id()
    store = open_store(args.store)
    await store.open()
    try:
        presence = await _presence(store, replica, args.lease_ttl)
    except Exception as error:
        await store.close()
        raise StoreError(f"{store.url}: cannot share presence: {error}") from error
    cache.share(presence)
    mirror = StoreMirror(store, cache, on_error=observer.config_rejected)
    started = time.time()
    tracker = ProxyTracker(cache, replica, lambda: mirror.revision)
    tracker.attach(observer)
    observer.hooks = (*observer.hooks, tracker)
    directory = ReplicaDirectory(tracker, presence, cache, lambda: ControlPlaneInfo(
        replica, pointsman_version(), mirror.revision, started))
    service = ApiService(MeshApi(store, mirror), mirror, StatusView(cache, directory),
                         directory, token=token)
    tokens = JoinTokens(TokenBook(store), lambda node: claimed_identity(node, cache))
    identity = IdentityApi(tokens, service._guarded)
    return ApiRuntime(store, mirror, ApiServer(service, credentials, (identity.handler(),)),
                      presence, directory, tokens)


def claimed_identity(node: Any, cache: SharedEndpointsCache) -> tuple[str, str] | None:
    """The (namespace, name) of the mesh member a node says it is; None for any other node
    (it gets no SVID, so it needs no join token)."""
    try:
        member = node_identity(node, cache.mesh)
    except NodeError:
        return None
    return None if member is None else (member.namespace, member.name)


async def _presence(store: Store, replica: str, ttl: int) -> LocalPresence:
    from controlplane.store.etcd import EtcdStore  # aetcd only with an etcd store
    if isinstance(store, EtcdStore):
        presence: LocalPresence = EtcdPresence(store.client, store.prefix, replica, ttl)
    else:
        presence = LocalPresence(replica)
    await presence.start()
    return presence


def default_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def pointsman_version() -> str:
    try:
        return importlib.metadata.version("pointsman")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
