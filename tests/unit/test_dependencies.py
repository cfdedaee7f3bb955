"""The OTLP exporter and Envoy's generated modules import side by side.

xds-protos ships an old opentelemetry/proto copy that breaks the exporter (InstrumentationScope);
`make install` reinstalls opentelemetry-proto after it. This test guards that step.
"""

from protos import registry


def test_otlp_exporter_and_envoy_protos_import_together() -> None:
    from envoy.config.listener.v3 import listener_pb2
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope

    assert listener_pb2.Listener.DESCRIPTOR.full_name == "envoy.config.listener.v3.Listener"
    assert OTLPSpanExporter is not None
    assert InstrumentationScope.DESCRIPTOR.full_name.endswith("InstrumentationScope")


def test_registry_resolves_every_supported_extension() -> None:
    for name in (
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "envoy.config.trace.v3.OpenTelemetryConfig",
    ):
        assert registry.is_known(registry.TYPE_PREFIX + name)
    assert not registry.is_known(registry.TYPE_PREFIX + "no.such.Type")
