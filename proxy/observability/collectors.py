"""Which clusters carry telemetry, and refusing a TLS one when the config arrives.

Our exporters (OTLP access logs, the OpenTelemetry stats sink and tracer) speak plaintext gRPC
or HTTP, while Envoy would use the collector cluster's transport_socket. Sending telemetry in
clear to a TLS port can never work, so the pair is refused when the config that joins them is
applied, not at the first export:
- the bootstrap (static listeners, stats sinks and clusters): a start-up error;
- an LDS update whose listener names a TLS cluster as its collector, or a CDS update bringing a
  TLS cluster that a listener or a stats sink names: a NACK, the previous config serving on.
A collector named before its cluster arrives is checked again when the cluster does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from protos.errors import ConfigError


def collector_uses(listeners: Iterable[Any], stats_sinks: Iterable[Any] = ()) -> dict[str, str]:
    """Collector cluster name -> where it is named (for the error), from listener models
    (proxy.model.listener.Listener) and stats sink configs."""
    uses: dict[str, str] = {}
    for index, sink in enumerate(stats_sinks):
        _add(uses, getattr(sink.target, "cluster_name", ""), f"stats_sinks[{index}]")
    for listener in listeners:
        for name, what in _listener_collectors(listener):
            _add(uses, name, f"{what} of listener {listener.name!r}")
    return uses


def refuse_tls_collectors(uses: Mapping[str, str], clusters: Mapping[str, Any], *,
                          source: str = "") -> None:
    """ConfigError naming the first collector cluster of `uses` that has a transport_socket."""
    for name, where in sorted(uses.items()):
        cluster = clusters.get(name)
        if cluster is not None and (getattr(cluster, "upstream_tls", None) is not None
                                    or bool(getattr(cluster, "socket_matches", None))):
            raise ConfigError(
                f"cluster {name!r} is a telemetry collector ({where}) and has a "
                "transport_socket or transport_socket_matches (TLS or PROXY protocol): "
                "Pointsman's exporters speak "
                "plaintext only", field="transport_socket", resource=name, source=source)


def _add(uses: dict[str, str], name: str, where: str) -> None:
    if name and name not in uses:
        uses[name] = where


def _listener_collectors(listener: Any) -> Iterator[tuple[str, str]]:
    chains = [*listener.filter_chains,
              *([listener.default_filter_chain] if listener.default_filter_chain else [])]
    for chain in chains:
        config = chain.filter.config
        settings = getattr(config, "settings", config)  # the HCM's HcmSettings, or tcp_proxy's
        for log in getattr(settings, "access_logs", ()) or ():
            otlp = getattr(log, "otlp", None)
            if otlp is not None:
                yield otlp.target.cluster_name, "an access log"
        tracing = getattr(settings, "tracing", None)
        if tracing is not None:
            if tracing.grpc is not None:
                yield tracing.grpc.cluster_name, "the tracer"
            if tracing.http is not None:
                yield tracing.http.cluster, "the tracer"
