"""The sidecar at run time: config state, xDS application, warming, listeners and clusters.

`Server` holds the current config (static from the bootstrap + dynamic from ADS), applies
updates as whole state-of-the-world sets (translate everything first: one bad resource NACKs
the update and the last good config stays) or, over delta xDS, as changes to the resources held
(`apply_delta`: the resulting set is checked and applied the same way), and owns the
ClusterManager and the ListenerManager. Listeners are built (network filters created, new
addresses bound) when their config arrives: the static ones in `start()`, before anything
serves, so an error there ends the process; an LDS update as a whole before any of it serves,
so an error NACKs it and changes nothing (proxy.listeners.manager stage/activate). Envoy's
initialization (intro/arch_overview/operations/init): listeners start accepting only once the
first CDS/LDS responses arrived, every cluster has its endpoints (EDS) and first health check
results, and every referenced route configuration arrived — or `initial_fetch_timeout` passed.
`/ready` reports it. Warming is woken by what can end it (an applied update, a cluster's hosts
or health changing), not polled.

What differs per xDS type is data in proxy.xds.resource_types (names, translators); what the
server does with each type is one apply step in `_appliers`.

The server's tasks (ADS client, initialization) have an owner (proxy.tasks): an exception in
one sets `failed` with a one-line `failure`, and the process exits with it (proxy.main).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from envoy.config.endpoint.v3 import endpoint_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from protos.errors import ConfigError
from protos.loader import pack_any, unpack_any
from protos.registry import (
    CLUSTER,
    CLUSTER_LOAD_ASSIGNMENT,
    LISTENER,
    ROUTE_CONFIGURATION,
    SECRET,
    load_all,
)
from proxy.bootstrap import Bootstrap, ensure_network_filters
from proxy.context import ServerContext
from proxy.listeners.manager import DEFAULT_DRAIN_TIMEOUT, ListenerBindError, ListenerManager
from proxy.model.cluster import Cluster
from proxy.model.endpoint import translate_cluster_load_assignment
from proxy.model.http_clusters import inline_route_configs, refuse_proxy_protocol_routes
from proxy.model.listener import Listener
from proxy.model.secret import DYNAMIC, SdsRef
from proxy.model.tls import check_secret, sds_refs, translate_upstream_tls, waiting_for
from proxy.observability.collectors import collector_uses, refuse_tls_collectors
from proxy.observability.grpc_target import refuse_tls_collector
from proxy.observability.hooks import Observability
from proxy.redact import redacted
from proxy.stats import Stats
from proxy.tasks import TaskSet
from proxy.upstream.manager import ClusterManager
from proxy.xds.resource_types import ResourceType, resource_type

if TYPE_CHECKING:
    from proxy.xds.delta import DeltaResource

log = logging.getLogger(__name__)

class RouteStore:
    """ServerContext.routes: the latest RouteConfig model per name (RDS)."""

    def __init__(self) -> None:
        self._routes: dict[str, Any] = {}

    def get(self, name: str) -> Any | None:
        return self._routes.get(name)

    def names(self) -> set[str]:
        return set(self._routes)

    def update(self, routes: dict[str, Any]) -> None:
        self._routes = {**self._routes, **routes}

    def keep_only(self, names: set[str]) -> None:
        self._routes = {name: route for name, route in self._routes.items() if name in names}


class SecretStore:
    """ServerContext.secrets: the bootstrap's static secrets, then those received over SDS."""

    def get(self, name: str) -> Any | None:
        from proxy.model.secret import static_secret

        return static_secret(name) or DYNAMIC.get(name)


@dataclass
class DynamicResource:
    """What /config_dump shows for one resource received over xDS."""

    version: str
    message: Message
    model: Any


@dataclass
class ConfigState:
    """The dynamic part of the config, by xDS type and resource name (last good values)."""

    resources: dict[str, dict[str, DynamicResource]] = field(default_factory=lambda: {
        LISTENER: {}, CLUSTER: {}, ROUTE_CONFIGURATION: {}, CLUSTER_LOAD_ASSIGNMENT: {},
        SECRET: {}})
    versions: dict[str, str] = field(default_factory=dict)

    def models(self, type_url: str) -> dict[str, Any]:
        return {name: item.model for name, item in self.resources[type_url].items()}


class Server:
    def __init__(self, bootstrap: Bootstrap, *, stats: Stats | None = None,
                 reuse_port: bool = False, drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
                 initial_fetch_timeout: float | None = None,
                 serve_traffic: bool = True, serve_quic: bool = True) -> None:
        """`serve_traffic=False` is the --concurrency parent (proxy.workers): it keeps and
        validates the config and talks xDS, but binds no listener and runs no health checks;
        `update_observers` receive every applied update to fan it out to the workers."""
        ensure_network_filters()
        self.bootstrap = bootstrap
        self.stats = stats or Stats()
        self.routes = RouteStore()
        self.cluster_manager = ClusterManager(self.stats)
        self.observability = Observability(
            self.stats, node_id=bootstrap.node.id, node_cluster=bootstrap.node.cluster,
            resolve_cluster=self.resolve_cluster,
            stat_sinks=bootstrap.stats_sinks if serve_traffic else (),
            stats_flush_interval=bootstrap.stats_flush_interval, exporting=serve_traffic)
        self.context = ServerContext(self.stats, bootstrap.node, self.cluster_manager,
                                     self.routes, SecretStore(), self.observability)
        self.listener_manager = ListenerManager(self.context, reuse_port=reuse_port,
                                                drain_timeout=drain_timeout,
                                                bind=serve_traffic, serve_quic=serve_quic)
        self.state = ConfigState()
        self.static_listeners = {item.name: item for item in bootstrap.listeners}
        self.static_clusters = {item.name: item for item in bootstrap.clusters}
        self.initialized = asyncio.Event()
        self.failed = asyncio.Event()  # the process must end: `failure` says why
        self.failure = ""
        self.initial_fetch_timeout = initial_fetch_timeout if initial_fetch_timeout is not None \
            else (bootstrap.ads.initial_fetch_timeout if bootstrap.ads else 0.0)
        self._tasks = TaskSet("server", on_error=self._task_failed)
        self._xds_client: Any = None
        self._sds_streams: Any = None  # proxy.xds.sds.SdsStreams, when xDS runs here
        self.serve_traffic = serve_traffic
        self.update_observers: list[Any] = []
        self.cluster_manager.update(self.static_clusters.values())
        # Set by whatever may finish warming: an applied update, a cluster's hosts or health.
        self._progress = asyncio.Event()
        self.cluster_manager.progress_listeners.append(self._progress.set)
        self._appliers: dict[str, Callable[[dict[str, DynamicResource]], None]] = {
            LISTENER: self._apply_listeners, CLUSTER: self._apply_clusters,
            CLUSTER_LOAD_ASSIGNMENT: self._apply_assignments,
            ROUTE_CONFIGURATION: self._apply_routes, SECRET: self._apply_secrets}

    def __repr__(self) -> str:
        return (f"Server(listeners={sorted(self.listener_manager.models)}, "
                f"clusters={self.cluster_manager.names()}, ready={self.ready})")

    @property
    def ready(self) -> bool:
        return self.initialized.is_set()

    def resolve_cluster(self, name: str) -> tuple[str, int] | None:
        """A host of cluster `name` (for exporters configured with envoy_grpc cluster names)."""
        runtime = self.cluster_manager.get(name)
        if runtime is None or not runtime.hosts:
            return None
        refuse_tls_collector(runtime.config)
        host = runtime.choose_host() or runtime.hosts[0]
        return host.address, host.port

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, *, xds: bool = True) -> None:
        """Build (and bind) the static listeners, then start clusters, the ADS client (if
        configured) and, once warm, the listeners. Raises ConfigError or ListenerBindError
        when a static listener cannot be built or bound; then nothing was started."""
        self.listener_manager.stage(self._all_listeners())
        self._check_sds_sources(self.secret_refs())
        if xds:
            from proxy.xds.sds import SdsStreams

            self._sds_streams = SdsStreams(self, self._tasks.spawn, ads_credentials)
            self._refresh_sds_streams()
        if self.bootstrap.ads is not None and xds:
            self._tasks.spawn(self._run_xds(), "ADS client")
        if self.serve_traffic:
            await self.cluster_manager.start()
            self._tasks.spawn(self._initialize(), "initialization")

    async def wait_ready(self) -> None:
        await self.initialized.wait()

    async def drain(self, grace: float) -> None:
        """SIGTERM: end the ADS stream first (the control plane stops sending callers here,
        docs/mesh.md), then let the listeners drain for at most `grace` seconds."""
        await self._tasks.close()
        await self.listener_manager.drain(grace)

    async def close(self) -> None:
        await self._tasks.close()
        await self.listener_manager.close()
        if self.context.http_pools is not None:
            self.context.http_pools.close()
        await self.cluster_manager.close()
        await asyncio.to_thread(self.observability.close)  # bounded drain of exporters

    def _fail(self, failure: str) -> None:
        if not self.failed.is_set():
            self.failure = failure
            self.failed.set()

    def _task_failed(self, name: str, error: BaseException) -> None:
        """proxy.tasks: a server task raised (a bug, or a config error found late)."""
        detail = str(error) if isinstance(error, ConfigError) else f"internal error: {error!r}"
        self._fail(f"{name}: {detail}")

    async def _initialize(self) -> None:
        try:
            async with asyncio.timeout(self.initial_fetch_timeout or None):
                await self._until_warm()
        except TimeoutError:
            log.warning("initial fetch timeout: starting listeners with what is known")
        failures = self.listener_manager.activate()
        if failures:
            # Envoy exits when a listener of the initial config cannot listen.
            self._fail(str(failures[0]))
            return
        self.initialized.set()

    async def _until_warm(self) -> None:
        while not self._warm():
            self._progress.clear()
            await self._progress.wait()

    def _warm(self) -> bool:
        """Envoy's init targets: first CDS/LDS, cluster warming, referenced routes."""
        ads = self.bootstrap.ads
        if ads is not None:
            if ads.cds and CLUSTER not in self.state.versions:
                return False
            if ads.lds and LISTENER not in self.state.versions:
                return False
        if not self.cluster_manager.all_initialized():
            return False
        if self._waiting_secrets():
            return False  # Envoy's SDS init targets: listeners and clusters warm on secrets
        return set(self.wanted_names(ROUTE_CONFIGURATION)) <= self.routes.names()

    def _waiting_secrets(self) -> set[str]:
        listeners = self._all_listeners().values()
        clusters = [*self.static_clusters.values(), *self.state.models(CLUSTER).values()]
        return {name for tls in [*_listener_tls(listeners), *_cluster_tls(clusters)]
                for name in waiting_for(tls)}

    async def _run_xds(self) -> None:
        from proxy.xds.backoff import JitteredBackoff
        from proxy.xds.client import AdsClient
        from proxy.xds.delta import DeltaProtocol
        from proxy.xds.protocol import AdsProtocol

        ads = self.bootstrap.ads
        assert ads is not None
        protocol = (DeltaProtocol if ads.delta else AdsProtocol)(
            self.bootstrap.node_proto, node_on_every_request=ads.node_on_every_request)
        protocol.subscribe_wildcard([t for t, on in ((CLUSTER, ads.cds), (LISTENER, ads.lds))
                                     if on])
        self._xds_client = AdsClient(ads.target, protocol, self, self.stats,
                                     credentials=self._ads_credentials,
                                     options=(("grpc.ssl_target_name_override", ads.tls.sni),)
                                     if ads.tls is not None and ads.tls.sni else (),
                                     backoff=JitteredBackoff(ads.backoff, random.Random()),
                                     targets=ads.targets, metadata=ads.metadata)
        if self.bootstrap.readiness is not None:  # the application's, reported over ADS
            from proxy.readiness.runner import run_probe
            self._tasks.spawn(run_probe(self.bootstrap.readiness,
                                        self._xds_client.report_health), "readiness probe")
        await self._xds_client.run()

    def _ads_credentials(self) -> Any:
        """The ADS channel's credentials, for each new stream: the xDS cluster's TLS context
        read again, so a client certificate renewed on disk (`pointsman sidecar` renews its
        xDS certificate at half life, docs/security.md) serves the next connection, and an
        open stream is not dropped for it. Unreadable now: the context read at start-up."""
        ads = self.bootstrap.ads
        assert ads is not None
        if ads.tls is None or ads.tls.certificate is None:
            return ads_credentials(ads.tls)
        try:
            cluster = next(item for item in self.bootstrap.message.static_resources.clusters
                           if item.name == ads.cluster_name)
            return ads_credentials(translate_upstream_tls(cluster.transport_socket))
        except (ConfigError, OSError, StopIteration) as error:
            log.warning("xDS client certificate: %s; using the one read at start-up", error)
            return ads_credentials(ads.tls)

    # -- xDS (proxy.xds.client.XdsApplier) ----------------------------------------------------

    def apply(self, type_url: str, version: str, resources: tuple[Any, ...]) -> None:
        """Apply one state-of-the-world update; ConfigError (-> NACK) changes nothing."""
        translated = self._translate_all(type_url, version, resources)
        self._apply_translated(type_url, version, translated)
        self._refresh_sds_streams()
        for observer in self.update_observers:
            observer(type_url, version, resources)

    def apply_delta(self, type_url: str, version: str, added: tuple[DeltaResource, ...],
                    removed: tuple[str, ...]) -> None:
        """Apply one incremental update (proxy.xds.delta): `added` resources, each with its
        own version, join or replace those held; the listeners and clusters named in
        `removed` go. The result is checked and applied as a state-of-the-world update, so a
        ConfigError (-> NACK) changes nothing. Removed EDS / RDS resources are ignored, as
        Envoy's EDS cluster and RDS subscription ignore them (the endpoints and routes stay),
        except that a cluster still waiting for its first endpoints stops warming, empty
        (EdsClusterImpl::validateUpdateSize)."""
        translated = _translate_delta(resource_type(type_url), added)
        if type_url in (LISTENER, CLUSTER):
            held = self.state.resources[type_url]
            translated = {**{name: item for name, item in held.items() if name not in removed},
                          **translated}
        elif type_url == CLUSTER_LOAD_ASSIGNMENT:
            translated = {**self._emptied_assignments(removed), **translated}
        self._apply_translated(type_url, version, translated)
        self._refresh_sds_streams()
        if type_url == ROUTE_CONFIGURATION and removed:
            log.warning("RDS: the server removed route configurations %s: ignored, as Envoy "
                        "does (the routes stay)", ", ".join(map(repr, removed)))
        # Workers (proxy.workers) get the equivalent state-of-the-world update.
        resources = tuple(pack_any(item.message) for item in translated.values())
        for observer in self.update_observers:
            observer(type_url, version, resources)

    def _emptied_assignments(self, removed: tuple[str, ...]) -> dict[str, DynamicResource]:
        """Removed ClusterLoadAssignments of EDS clusters that never had endpoints: an empty
        assignment each, so that they finish warming (the others keep their endpoints)."""
        if not removed:
            return {}
        held = self.state.resources[CLUSTER_LOAD_ASSIGNMENT]
        wanted = set(self.cluster_manager.eds_resource_names())
        return {name: _empty_assignment(name) for name in removed
                if name not in held and name in wanted}

    def _apply_translated(self, type_url: str, version: str,
                          translated: dict[str, DynamicResource]) -> None:
        apply = self._appliers.get(type_url)
        if apply is None:
            raise ConfigError(f"resource type {type_url!r} is not supported")
        apply(translated)
        self.state.versions[type_url] = version
        self._progress.set()  # warming may be over

    def _apply_routes(self, translated: dict[str, DynamicResource]) -> None:
        self._check_route_clusters(translated)
        refuse_proxy_protocol_routes(
            [(item.model, f"RouteConfiguration {name!r}") for name, item in translated.items()],
            {**self.static_clusters, **self.state.models(CLUSTER)}, source="RDS")
        self.state.resources[ROUTE_CONFIGURATION].update(translated)
        self.routes.update({name: item.model for name, item in translated.items()})
        self._serve_warm_listeners()  # some may be warm now

    def _apply_secrets(self, translated: dict[str, DynamicResource]) -> None:
        """SDS: each secret's certificate and key must load (else NACK, nothing changes);
        then the TLS contexts bound to them reload for new handshakes, and the listeners
        that waited for them serve. Secrets left out of a response are kept (SotW SDS is
        not a full state: xds_protocol.rst, "Grouping Resources into Responses")."""
        for name, item in translated.items():
            try:
                check_secret(item.model)
            except ConfigError as error:
                raise error.within(resource=name, source="SDS") from error
        self.state.resources[SECRET].update(translated)
        DYNAMIC.update({name: item.model for name, item in translated.items()})
        self._serve_warm_listeners()

    def _check_route_clusters(self, translated: dict[str, DynamicResource]) -> None:
        """RouteConfiguration.validate_clusters over RDS (default false there): when true, a
        route table naming a cluster the cluster manager does not know is refused (NACK), as
        Envoy refuses to load it."""
        def known(cluster: str) -> bool:
            return self.cluster_manager.get(cluster) is not None

        for name, item in translated.items():
            if item.model.validate_clusters is True:
                try:
                    item.model.refuse_unknown_clusters(known)
                except ConfigError as error:
                    raise error.within(resource=name, source="RDS") from error

    def wanted_names(self, type_url: str) -> Iterable[str]:
        if type_url == CLUSTER_LOAD_ASSIGNMENT:
            return self.cluster_manager.eds_resource_names()
        if type_url == ROUTE_CONFIGURATION:
            # The routes of the listeners configured, and of the versions still serving while
            # their successors warm: those keep their routes until they are replaced, as in
            # Envoy (a warming listener's predecessor serves on, intro/arch_overview/
            # operations/init), or their requests would find no route.
            listeners = [*self._all_listeners().values(),
                         *self.listener_manager.models.values()]
            return sorted({name for listener in listeners
                           for name in listener.rds_route_config_names})
        if type_url == SECRET:
            return sorted({ref.name for ref in self.secret_refs() if ref.source.ads})
        return ()

    def _check_sds_sources(self, refs: Iterable[SdsRef]) -> None:
        """`ads: {}` needs the bootstrap's ads_config (Envoy refuses it otherwise)."""
        from proxy.xds.sds import targets_of

        for ref in refs:
            if ref.source.ads and self.bootstrap.ads is None:
                raise ConfigError(f"secret {ref.name!r}: sds_config {{ads: {{}}}} needs the "
                                  "bootstrap's dynamic_resources.ads_config",
                                  field="sds_config.ads")
            if not ref.source.ads:
                field = "sds_config.api_config_source.grpc_services[0].envoy_grpc.cluster_name"
                cluster = self.static_clusters.get(ref.source.cluster)
                if cluster is None:
                    raise ConfigError(f"secret {ref.name!r}: SDS cluster "
                                      f"{ref.source.cluster!r} is not a static cluster",
                                      field=field)
                targets_of(cluster, field)

    def _refresh_sds_streams(self) -> None:
        """One SDS stream per api_config_source cluster the configuration names; secrets no
        listener or cluster names any more are dropped (Envoy drops an SDS subscription with
        the last TLS context using it)."""
        refs = self.secret_refs()
        named = {ref.name for ref in refs}
        held = self.state.resources[SECRET]
        for name in [name for name in held if name not in named]:
            del held[name]
        DYNAMIC.keep_only(named)
        if self._sds_streams is None:
            return
        wanted: dict[str, set[str]] = {}
        for ref in refs:
            if not ref.source.ads:
                wanted.setdefault(ref.source.cluster, set()).add(ref.name)
        self._sds_streams.refresh({cluster: tuple(sorted(names))
                                   for cluster, names in wanted.items()})

    def secret_refs(self) -> set[SdsRef]:
        """Every SDS secret the listeners (serving, warming, configured) and clusters name."""
        listeners = [*self._all_listeners().values(), *self.listener_manager.models.values(),
                     *self.listener_manager.staged.values()]
        clusters = [*self.static_clusters.values(), *self.state.models(CLUSTER).values()]
        return {ref for tls in [*_listener_tls(listeners), *_cluster_tls(clusters)]
                for ref in sds_refs(tls)}

    def _translate_all(self, type_url: str, version: str, resources: tuple[Any, ...]
                       ) -> dict[str, DynamicResource]:
        kind = resource_type(type_url)
        return _by_name(kind, (_translate_one(kind, version, packed, f"resources[{index}]")
                               for index, packed in enumerate(resources)))

    def _apply_listeners(self, translated: dict[str, DynamicResource]) -> None:
        for name in translated:
            if name in self.static_listeners:
                raise ConfigError("a static listener has this name", resource=name,
                                  source="LDS")
        listeners = {**self.static_listeners,
                     **{name: item.model for name, item in translated.items()}}
        _check_distinct_addresses(listeners)
        try:
            self._check_sds_sources(ref for tls in _listener_tls(listeners.values())
                                    for ref in sds_refs(tls))
        except ConfigError as error:
            raise error.within(source="LDS") from error
        clusters = {**self.static_clusters, **self.state.models(CLUSTER)}
        self._refuse_tls_collectors(list(listeners.values()), clusters.values(), source="LDS")
        refuse_proxy_protocol_routes(inline_route_configs(list(listeners.values())), clusters,
                                     source="LDS")
        try:
            self.listener_manager.stage(listeners)  # all built (and bound) or nothing changed
        except ListenerBindError as error:
            raise ConfigError(f"cannot listen on {error.address[0]}:{error.address[1]}: "
                              f"{error.strerror}", source="LDS", resource=error.listener,
                              field="address") from error
        except ConfigError as error:
            raise error.within(source="LDS") from error
        self.state.resources[LISTENER] = translated
        self._drop_unwanted_routes()
        self._serve_warm_listeners()

    def _drop_unwanted_routes(self) -> None:
        """Route configurations no listener names any more are dropped (unsubscribed)."""
        wanted = set(self.wanted_names(ROUTE_CONFIGURATION))
        routes = self.state.resources[ROUTE_CONFIGURATION]
        for name in [name for name in routes if name not in wanted]:
            del routes[name]
        self.routes.keep_only(wanted)

    def _serve_warm_listeners(self) -> None:
        """Envoy's listener warming after start-up: a new or updated listener serves once its
        route configurations (RDS) arrived; until then the previous version of the same
        listener, if any, keeps serving (intro/arch_overview/operations/init). A removed
        listener stops at once. A socket that cannot listen() is logged and counted
        (listener_create_failure): the update was accepted, as in Envoy."""
        if not (self.ready and self.serve_traffic):
            return
        known_routes = self.routes.names()
        warm = {name for name, model in self.listener_manager.staged.items()
                if set(model.rds_route_config_names) <= known_routes
                and not any(waiting_for(tls) for tls in _listener_tls([model]))}
        self.listener_manager.activate(warm)
        self._drop_unwanted_routes()  # those only the replaced versions used

    def _apply_clusters(self, translated: dict[str, DynamicResource]) -> None:
        for name in translated:
            if name in self.static_clusters:
                raise ConfigError("a static cluster has this name", resource=name,
                                  source="CDS")
        clusters: list[Cluster] = [*self.static_clusters.values(),
                                   *(item.model for item in translated.values())]
        try:
            self._check_sds_sources(ref for tls in _cluster_tls(clusters)
                                    for ref in sds_refs(tls))
        except ConfigError as error:
            raise error.within(source="CDS") from error
        self._refuse_tls_collectors(self._all_listeners().values(), clusters, source="CDS")
        refuse_proxy_protocol_routes(self._route_configs(), {c.name: c for c in clusters},
                                     source="CDS")
        self.cluster_manager.update(clusters)
        self.state.resources[CLUSTER] = translated
        # Envoy forgets the endpoints of clusters that went away (the EDS subscription ends).
        wanted = set(self.cluster_manager.eds_resource_names())
        assignments = self.state.resources[CLUSTER_LOAD_ASSIGNMENT]
        for name in [name for name in assignments if name not in wanted]:
            del assignments[name]

    def _route_configs(self) -> list[tuple[Any, str]]:
        """Every route table in use: inline in listeners, and those from RDS."""
        return [*inline_route_configs(self._all_listeners().values()),
                *((model, f"RouteConfiguration {name!r}")
                  for name, model in self.state.models(ROUTE_CONFIGURATION).items())]

    def _refuse_tls_collectors(self, listeners: Iterable[Listener], clusters: Iterable[Cluster],
                               *, source: str) -> None:
        """A collector cluster with a transport_socket is refused when the update joining
        the two arrives (proxy.observability.collectors): NACK, the old config stays."""
        refuse_tls_collectors(collector_uses(listeners, self.bootstrap.stats_sinks),
                              {cluster.name: cluster for cluster in clusters}, source=source)

    def _apply_assignments(self, translated: dict[str, DynamicResource]) -> None:
        for item in translated.values():
            self.cluster_manager.update_assignment(item.model)
        self.state.resources[CLUSTER_LOAD_ASSIGNMENT].update(translated)

    def _all_listeners(self) -> dict[str, Listener]:
        return {**self.static_listeners, **self.state.models(LISTENER)}

    # -- admin --------------------------------------------------------------------------------

    def config_dump(self) -> dict[str, Any]:
        """Envoy's /config_dump shape: static and dynamic resources with their versions."""
        load_all()  # JSON of an Any needs its type, even one nothing else resolved
        message = self.bootstrap.message
        statics = message.static_resources

        def dump(item: Message) -> dict[str, Any]:
            # private keys and other sensitive fields as "[redacted]", as Envoy shows them
            return json_format.MessageToDict(redacted(item), preserving_proto_field_name=True)

        def dynamic(type_url: str, key: str) -> list[dict[str, Any]]:
            return [{"name": name, "version_info": item.version, key: dump(item.message)}
                    for name, item in sorted(self.state.resources[type_url].items())]

        prefix = "type.googleapis.com/envoy.admin.v3."
        return {"configs": [
            {"@type": prefix + "BootstrapConfigDump", "bootstrap": dump(message)},
            {"@type": prefix + "ClustersConfigDump",
             "version_info": self.state.versions.get(CLUSTER, ""),
             "static_clusters": [{"cluster": dump(c)} for c in statics.clusters],
             "dynamic_active_clusters": dynamic(CLUSTER, "cluster")},
            {"@type": prefix + "EndpointsConfigDump",
             "dynamic_endpoint_configs": dynamic(CLUSTER_LOAD_ASSIGNMENT, "endpoint_config")},
            {"@type": prefix + "ListenersConfigDump",
             "version_info": self.state.versions.get(LISTENER, ""),
             "static_listeners": [{"listener": dump(item)} for item in statics.listeners],
             "dynamic_listeners": dynamic(LISTENER, "listener")},
            {"@type": prefix + "RoutesConfigDump",
             "dynamic_route_configs": dynamic(ROUTE_CONFIGURATION, "route_config")},
            {"@type": prefix + "SecretsConfigDump",
             "static_secrets": [{"name": item.name, "secret": dump(pack_any(item))}
                                for item in statics.secrets],
             "dynamic_active_secrets": [
                 {"name": name, "version_info": item.version,
                  "secret": dump(pack_any(item.message))}
                 for name, item in sorted(self.state.resources[SECRET].items())]},
        ]}


def _listener_tls(listeners: Iterable[Listener]) -> list[Any]:
    return [chain.tls for listener in listeners
            for chain in (*listener.filter_chains, listener.default_filter_chain)
            if chain is not None and chain.tls is not None]


def _cluster_tls(clusters: Iterable[Cluster]) -> list[Any]:
    return [tls for cluster in clusters for tls in cluster.all_transports()]


def ads_credentials(tls: Any) -> Any:
    """gRPC channel credentials from the ADS cluster's UpstreamTlsContext (None: plaintext).
    Without a trusted_ca gRPC verifies against the system roots (Envoy would not verify)."""
    if tls is None or tls.ssl_context is None:
        return None
    import grpc

    return grpc.ssl_channel_credentials(
        root_certificates=tls.validation.trusted_ca if tls.validation else None,
        private_key=tls.certificate.private_key if tls.certificate else None,
        certificate_chain=tls.certificate.certificate_chain if tls.certificate else None)


def _check_distinct_addresses(listeners: dict[str, Listener]) -> None:
    """Envoy refuses two listeners on one address ("has duplicate address"); with
    SO_REUSEPORT (workers) the second bind would not fail, so check by name first."""
    seen: dict[tuple[str, int], str] = {}
    for name, listener in sorted(listeners.items()):
        if listener.address[1] == 0:
            continue
        if listener.address in seen:
            raise ConfigError(f"duplicate address {listener.address[0]}:{listener.address[1]} "
                              f"(listener {seen[listener.address]!r} has it)", source="LDS",
                              resource=name, field="address")
        seen[listener.address] = name


def _translate_one(kind: ResourceType, version: str, packed: Any, where: str
                   ) -> DynamicResource:
    try:
        message = unpack_any(packed, field=where)
        return DynamicResource(version, message, kind.translate(message))
    except ConfigError as error:
        raise error.within(source=kind.short_name) from error


def _by_name(kind: ResourceType, items: Iterable[DynamicResource]) -> dict[str, DynamicResource]:
    result: dict[str, DynamicResource] = {}
    for item in items:
        name = kind.name_of(item.model)
        if name in result:
            raise ConfigError(f"duplicate resource {name!r}", resource=name,
                              source=kind.short_name)
        result[name] = item
    return result


def _translate_delta(kind: ResourceType, added: tuple[DeltaResource, ...]
                     ) -> dict[str, DynamicResource]:
    """Each added resource translated once, with its own version; a resource asked for by
    name must be the one its delta name says (ResourceType.named_by_subscription)."""
    items = []
    for resource in added:
        item = _translate_one(kind, resource.version, resource.resource,
                              f"resources[{resource.index}].resource")
        own = kind.name_of(item.model)
        if kind.named_by_subscription and own != resource.name:
            raise ConfigError(f"{own!r} is not the resource {resource.name!r} it is sent as",
                              resource=resource.name, source=kind.short_name,
                              field=f"resources[{resource.index}].resource.{kind.name_field}")
        items.append(item)
    return _by_name(kind, items)


def _empty_assignment(name: str) -> DynamicResource:
    message = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    return DynamicResource("", message, translate_cluster_load_assignment(message))


class ServerAdminSource:
    """proxy.admin.AdminSource over one in-process Server."""

    def __init__(self, server: Server) -> None:
        self.server = server

    @property
    def ready(self) -> bool:
        return self.server.ready

    def config_dump(self) -> dict[str, Any]:
        return self.server.config_dump()

    def clusters_view(self) -> dict[str, Any]:
        return self.server.cluster_manager.admin_view()

    def stats_store(self) -> Stats:
        return self.server.stats

    def listener_addresses(self) -> dict[str, tuple[str, int]]:
        return self.server.listener_manager.addresses()
