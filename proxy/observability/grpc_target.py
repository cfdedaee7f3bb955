"""Where an exporter sends: Envoy's GrpcService / HttpService, resolved to an address.

`envoy_grpc.cluster_name` names a cluster of the bootstrap; the server passes a resolver callback
(`cluster name -> (host, port)`) when building exporters, so this module stays free of the cluster
manager. `google_grpc.target_uri` is used as is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protos.errors import ConfigError
from proxy.model.fields import reject_unsupported

ClusterResolver = Callable[[str], "tuple[str, int] | None"]


@dataclass(frozen=True)
class GrpcTarget:
    cluster_name: str = ""  # envoy_grpc
    target_uri: str = ""  # google_grpc
    authority: str = ""
    timeout: float = 5.0
    headers: tuple[tuple[str, str], ...] = ()

    def endpoint(self, resolve: ClusterResolver | None) -> str:
        """`host:port` for grpc.insecure_channel."""
        if self.target_uri:
            return self.target_uri
        address = resolve(self.cluster_name) if resolve is not None else None
        if address is None:
            raise ConfigError(f"cluster {self.cluster_name!r} for the collector is unknown or has "
                              "no endpoint", field="grpc_service.envoy_grpc.cluster_name")
        host, port = address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        """initial_metadata, sent on every call (grpc wants None rather than empty)."""
        return self.headers or None

    def open_channel(self, resolve: ClusterResolver | None) -> Any:
        """The one way every exporter (access log, stat sink, tracer) opens its channel, so each
        field of the target is honoured by all of them. Plaintext only: a collector cluster
        with a transport_socket is refused at config time (proxy.observability.collectors;
        refuse_tls_collector below stays as the resolver's backstop)."""
        import grpc

        return grpc.insecure_channel(self.endpoint(resolve), options=self.channel_options)

    @property
    def channel_options(self) -> tuple[tuple[str, str], ...]:
        """envoy_grpc.authority: the :authority of every call (the cluster name when unset, see
        translate_grpc_service); google_grpc: grpc's default, the target_uri."""
        return (("grpc.default_authority", self.authority),) if self.authority else ()


# Fields of envoy.config.core.v3.GrpcService and its two targets that we implement; any other
# set field is refused by name (a field we silently skipped would change what Envoy sends).
GRPC_SERVICE_FIELDS = ("envoy_grpc", "google_grpc", "timeout", "initial_metadata")
ENVOY_GRPC_FIELDS = ("cluster_name", "authority")
GOOGLE_GRPC_FIELDS = ("target_uri", "stat_prefix")  # stat_prefix only names stats


def translate_grpc_service(message: Any) -> GrpcTarget:
    """envoy.config.core.v3.GrpcService -> GrpcTarget (allow-listed, see *_FIELDS above)."""
    reject_unsupported(message, GRPC_SERVICE_FIELDS)
    timeout = 5.0
    if message.HasField("timeout"):
        timeout = message.timeout.ToTimedelta().total_seconds() or 5.0
    headers = tuple((h.key.lower(), h.value) for h in message.initial_metadata)
    which = message.WhichOneof("target_specifier")
    if which == "envoy_grpc":
        envoy = message.envoy_grpc
        reject_unsupported(envoy, ENVOY_GRPC_FIELDS, prefix="envoy_grpc.")
        if not envoy.cluster_name:
            raise ConfigError("cluster_name is required", field="envoy_grpc.cluster_name")
        # grpc_service.proto: "If this field is not set, the authority header value will be
        # cluster_name".
        return GrpcTarget(cluster_name=envoy.cluster_name,
                          authority=envoy.authority or envoy.cluster_name,
                          timeout=timeout, headers=headers)
    if which == "google_grpc":
        google = message.google_grpc
        reject_unsupported(google, GOOGLE_GRPC_FIELDS, prefix="google_grpc.")
        if not google.target_uri:
            raise ConfigError("target_uri is required", field="google_grpc.target_uri")
        return GrpcTarget(target_uri=google.target_uri, timeout=timeout, headers=headers)
    raise ConfigError("grpc_service needs envoy_grpc or google_grpc", field="target_specifier")


def refuse_tls_collector(cluster: Any) -> None:
    """Exporters speak plaintext (gRPC, or HTTP for the tracer); Envoy would use the collector
    cluster's transport_socket. Refuse such a cluster rather than send telemetry in clear to a
    TLS port. `cluster`: a proxy.model.cluster.Cluster (upstream_tls: its transport socket)."""
    if getattr(cluster, "upstream_tls", None) is not None \
            or bool(getattr(cluster, "socket_matches", None)):
        raise ConfigError(f"cluster {cluster.name!r} has a transport_socket (TLS or PROXY "
                          "protocol); Pointsman's exporters (access log, stats sink, tracer) "
                          "only speak plaintext to a collector", field="transport_socket")
