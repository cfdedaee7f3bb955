"""Where an exporter sends: Envoy's GrpcService / HttpService, resolved to an address.

`envoy_grpc.cluster_name` names a cluster of the bootstrap; the server passes a resolver callback
(`cluster name -> (host, port)`) when building exporters, so this module stays free of the cluster
manager. `google_grpc.target_uri` is used as is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protos.errors import ConfigError, unsupported

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


def translate_grpc_service(message: Any) -> GrpcTarget:
    """envoy.config.core.v3.GrpcService -> GrpcTarget."""
    if message.HasField("retry_policy"):
        raise unsupported("retry_policy")
    timeout = 5.0
    if message.HasField("timeout"):
        timeout = message.timeout.ToTimedelta().total_seconds() or 5.0
    headers = tuple((h.key.lower(), h.value) for h in message.initial_metadata)
    which = message.WhichOneof("target_specifier")
    if which == "envoy_grpc":
        envoy = message.envoy_grpc
        if not envoy.cluster_name:
            raise ConfigError("cluster_name is required", field="envoy_grpc.cluster_name")
        if envoy.HasField("retry_policy"):
            raise unsupported("envoy_grpc.retry_policy")
        return GrpcTarget(cluster_name=envoy.cluster_name, authority=envoy.authority,
                          timeout=timeout, headers=headers)
    if which == "google_grpc":
        google = message.google_grpc
        if google.HasField("channel_credentials") or len(google.call_credentials):
            raise unsupported("google_grpc.channel_credentials", "TLS/credentials to collectors")
        if not google.target_uri:
            raise ConfigError("target_uri is required", field="google_grpc.target_uri")
        return GrpcTarget(target_uri=google.target_uri, timeout=timeout, headers=headers)
    raise ConfigError("grpc_service needs envoy_grpc or google_grpc", field="target_specifier")
