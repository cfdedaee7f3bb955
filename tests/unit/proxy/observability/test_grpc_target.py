"""GrpcService -> GrpcTarget: allow-listed fields, refusals by name, one channel for all."""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2

from protos.errors import ConfigError
from protos.loader import parse_message
from proxy.model.cluster import Cluster, translate_cluster
from proxy.observability.grpc_target import (
    GrpcTarget,
    refuse_tls_collector,
    translate_grpc_service,
)
from proxy.observability.stat_sink import METRICS_EXPORT_METHOD, OtlpStatSink, StatSinkConfig
from proxy.stats import Stats


def grpc_service(body: dict[str, Any]) -> Any:
    from envoy.config.core.v3 import grpc_service_pb2

    return parse_message(body, grpc_service_pb2.GrpcService)


@pytest.mark.parametrize(("body", "field"), [
    ({"envoy_grpc": {"cluster_name": "c", "max_receive_message_length": 10}},
     "envoy_grpc.max_receive_message_length"),
    ({"envoy_grpc": {"cluster_name": "c", "skip_envoy_headers": True}},
     "envoy_grpc.skip_envoy_headers"),
    ({"envoy_grpc": {"cluster_name": "c", "retry_policy": {"num_retries": 2}}},
     "envoy_grpc.retry_policy"),
    ({"google_grpc": {"target_uri": "h:1", "channel_args": {"args": {"a": {"int_value": 1}}}}},
     "google_grpc.channel_args"),
    ({"google_grpc": {"target_uri": "h:1", "per_stream_buffer_limit_bytes": 1024}},
     "google_grpc.per_stream_buffer_limit_bytes"),
    ({"google_grpc": {"target_uri": "h:1", "channel_credentials_plugin": [{}]}},
     "google_grpc.channel_credentials_plugin"),
    ({"google_grpc": {"target_uri": "h:1", "call_credentials_plugin": [{}]}},
     "google_grpc.call_credentials_plugin"),
    ({"google_grpc": {"target_uri": "h:1", "channel_credentials": {"local_credentials": {}}}},
     "google_grpc.channel_credentials"),
    ({"envoy_grpc": {"cluster_name": "c"}, "retry_policy": {"num_retries": 1}}, "retry_policy"),
])
def test_unimplemented_fields_are_refused_by_name(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        translate_grpc_service(grpc_service(body))
    assert caught.value.field == field


def test_implemented_fields_are_translated() -> None:
    target = translate_grpc_service(grpc_service({
        "envoy_grpc": {"cluster_name": "otel", "authority": "collector.example"},
        "timeout": "2s", "initial_metadata": [{"key": "X-Token", "value": "t"}]}))
    assert target == GrpcTarget(cluster_name="otel", authority="collector.example", timeout=2.0,
                                headers=(("x-token", "t"),))
    assert target.metadata == (("x-token", "t"),)
    google = translate_grpc_service(grpc_service(
        {"google_grpc": {"target_uri": "h:1", "stat_prefix": "otel"}}))
    assert google.target_uri == "h:1" and google.metadata is None


def test_tls_collector_cluster_is_refused() -> None:
    refuse_tls_collector(Cluster(name="plain"))  # no error
    tls = translate_cluster(parse_message({
        "name": "otel", "connect_timeout": "1s",
        "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/"
                     "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": "collector.example"}}}, cluster_pb2.Cluster))
    assert tls.upstream_tls is not None
    with pytest.raises(ConfigError, match="otel") as caught:
        refuse_tls_collector(tls)
    assert caught.value.field == "transport_socket"


def test_stat_sink_sends_initial_metadata() -> None:
    seen: list[dict[str, str]] = []

    def export(request: bytes, context: grpc.ServicerContext) -> bytes:
        seen.append(dict(context.invocation_metadata()))
        return b""

    handler = grpc.method_handlers_generic_handler(
        METRICS_EXPORT_METHOD.split("/")[1],
        {METRICS_EXPORT_METHOD.split("/")[2]: grpc.unary_unary_rpc_method_handler(export)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stats = Stats()
    target = GrpcTarget(cluster_name="otel", headers=(("x-token", "secret"),), timeout=2.0)
    sink = OtlpStatSink(StatSinkConfig(target=target, prefix=""), stats,
                        resolve=lambda name: ("127.0.0.1", port), resource={}, interval=60)
    try:
        sink.flush()
    finally:
        sink.close()
        server.stop(None)
    assert seen and seen[0].get("x-token") == "secret"
    assert stats.counter("stats_sink.open_telemetry.export_failures").value == 0


def test_authority_defaults_to_the_cluster_name_as_in_envoy() -> None:
    target = translate_grpc_service(grpc_service({"envoy_grpc": {"cluster_name": "otel"}}))
    assert target.authority == "otel"
    assert target.channel_options == (("grpc.default_authority", "otel"),)
    google = translate_grpc_service(grpc_service({"google_grpc": {"target_uri": "h:1"}}))
    assert google.channel_options == ()


def test_every_exporter_channel_carries_the_authority(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[tuple[str, Any]] = []
    monkeypatch.setattr(grpc, "insecure_channel",
                        lambda address, options=(): opened.append((address, options)))
    target = GrpcTarget(cluster_name="otel", authority="collector.example")
    target.open_channel(lambda name: ("127.0.0.1", 4317))
    assert opened == [("127.0.0.1:4317", (("grpc.default_authority", "collector.example"),))]
