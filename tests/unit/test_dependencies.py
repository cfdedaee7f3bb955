"""Dependencies: Envoy's generated modules and the generated OTLP classes the tests decode
with import side by side in the dev venv; the product itself imports no `opentelemetry.proto`
nor opentelemetry-exporter-otlp (a plain pip install is checked end to end in
tests/integration/proxy/observability/test_plain_pip_install.py)."""

import ast
from pathlib import Path

from protos import registry

REPO = Path(__file__).resolve().parents[2]


def test_the_generated_otlp_classes_and_envoy_protos_import_together() -> None:
    from envoy.config.listener.v3 import listener_pb2
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope

    assert listener_pb2.Listener.DESCRIPTOR.full_name == "envoy.config.listener.v3.Listener"
    assert InstrumentationScope.DESCRIPTOR.full_name.endswith("InstrumentationScope")


def test_the_product_imports_no_generated_otlp_module() -> None:
    """Only MemoryExporter, a fake collector for tests, may: it is never built by the product."""
    found = []
    for path in sorted((REPO / "proxy").rglob("*.py")) + sorted((REPO / "controlplane")
                                                                    .rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                    ("opentelemetry.proto", "opentelemetry.exporter")):
                found.append(f"{path.relative_to(REPO)}: {node.module}")
    assert found == ["proxy/observability/tracing/export.py: "
                     "opentelemetry.proto.collector.trace.v1"]


def test_registry_resolves_every_supported_extension() -> None:
    for name in (
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "envoy.config.trace.v3.OpenTelemetryConfig",
    ):
        assert registry.is_known(registry.TYPE_PREFIX + name)
    assert not registry.is_known(registry.TYPE_PREFIX + "no.such.Type")
