"""Cluster `transport_socket_matches` -> frozen model, and the per-endpoint choice Envoy makes.

api/envoy/config/cluster/v3/cluster.proto, `Cluster.TransportSocketMatch` and
`transport_socket_matches`: "Envoy uses the first match" whose `match` struct is a subset of the
endpoint's metadata under the filter key `envoy.transport_socket_match`; "if no match is found,
the cluster's transport_socket is used". Envoy (TransportSocketMatcherImpl::resolve) tries every
match against the endpoint's metadata first, then every match against its locality's metadata,
then the default. Subset means: each top-level key of `match` is present in that metadata with
an equal value (Config::Metadata::metadataLabelMatch, ValueUtil::equal: same kind and value,
lists and structs compared element by element); an empty `match` matches every endpoint, even
one without metadata.

The chosen socket is per host: HTTP pools are keyed by it, tcp_proxy and health checks connect
with it (proxy.upstream). Stats: `cluster.<name>.<match name>.total_match_count` each time a
host resolves to that match, `cluster.<name>.default.total_match_count` for the default; Envoy
1.40 emits the default's counter for every cluster, with or without matches (measured:
HostDescriptionImpl resolves every host it creates).

`transport_socket_matcher` (the newer xDS matcher tree over the same named sockets) is refused
by name in proxy.model.cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protos.errors import ConfigError, unsupported
from proxy.model.fields import reject_unsupported
from proxy.model.metadata import SocketMetadata, canonical_struct
from proxy.model.quic import is_quic_upstream
from proxy.model.tls import UpstreamTls, translate_upstream_tls

DEFAULT_NAME = "default"


@dataclass(frozen=True)
class TransportSocketMatch:
    name: str
    labels: SocketMetadata  # the `match` struct: every pair must be in the endpoint's metadata
    transport: UpstreamTls | None  # None: raw_buffer (plain TCP)

    def matches(self, metadata: SocketMetadata | None) -> bool:
        """Config::Metadata::metadataLabelMatch with list_as_any false."""
        if metadata is None:
            return not self.labels
        present = dict(metadata)
        return all(key in present and present[key] == value for key, value in self.labels)


@dataclass(frozen=True)
class SocketChoice:
    """What one host connects with: the match's name ("default" for the cluster's own
    transport_socket) and its transport (None: plain TCP)."""

    name: str
    transport: UpstreamTls | None


def resolve(matches: tuple[TransportSocketMatch, ...], default: UpstreamTls | None,
            endpoint: SocketMetadata | None, locality: SocketMetadata | None) -> SocketChoice:
    """Envoy's order: every match against the endpoint metadata, then every match against the
    locality metadata, then the default."""
    for scope in (endpoint, locality):
        for match in matches:
            if match.matches(scope):
                return SocketChoice(match.name, match.transport)
    return SocketChoice(DEFAULT_NAME, default)


def match_stat_name(prefix: str, name: str) -> str:
    """The total_match_count counter of match `name` under `cluster.<name>.` (see above)."""
    return f"{prefix}{name}.total_match_count"


_MATCH_FIELDS = {"name", "match", "transport_socket"}


def translate_socket_matches(messages: Any) -> tuple[TransportSocketMatch, ...]:
    """Cluster.transport_socket_matches -> model; ConfigError names the bad field."""
    found = []
    for index, message in enumerate(messages):
        prefix = f"transport_socket_matches[{index}]."
        try:
            found.append(_translate_match(message, prefix))
        except ConfigError as error:
            raise error.within(field=prefix.rstrip(".")) from error
    return tuple(found)


def _translate_match(message: Any, prefix: str) -> TransportSocketMatch:
    reject_unsupported(message, _MATCH_FIELDS)
    if not message.name:
        # cluster.proto: string name = 1 [(validate.rules).string = {min_len: 1}].
        raise ConfigError("a transport socket match needs a name", field="name")
    transport = None
    if message.HasField("transport_socket"):
        if is_quic_upstream(message.transport_socket):
            raise unsupported("transport_socket", "QUIC (HTTP/3) per endpoint")
        try:
            transport = translate_upstream_tls(message.transport_socket)
        except ConfigError as error:
            raise error.within(field="transport_socket") from error
        if transport is not None and transport.proxy_protocol_version is not None:
            raise unsupported("transport_socket",
                              "the upstream PROXY protocol transport socket per endpoint")
    return TransportSocketMatch(message.name, canonical_struct(message.match), transport)
