"""Upstream HTTP/3 config -> model: explicit http3_protocol_options with the QUIC transport
socket (QuicUpstreamTransport wrapping an UpstreamTlsContext), and what is refused by path."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from protos.errors import ConfigError
from protos.loader import parse_message
from proxy.model.cluster import Cluster, translate_cluster
from proxy.upstream.pools import upstream_protocol
from tests.support.http3 import h3_cluster


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("h3up-ca")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert


def build(body: dict[str, Any]) -> Cluster:
    return translate_cluster(parse_message(body, cluster_pb2.Cluster))


def test_explicit_http3_with_the_quic_transport_socket(ca: Path) -> None:
    cluster = build(h3_cluster("h3", 443, ca, sni="upstream.example"))
    assert upstream_protocol(cluster).http3
    tls = cluster.upstream_tls
    assert tls is not None and tls.quic
    assert tls.sni == "upstream.example"
    assert tls.alpn_protocols == ("h3",)
    assert tls.validation is not None and tls.validation.trusted_ca == ca.read_bytes()


def test_without_trusted_ca_the_server_is_not_verified() -> None:
    cluster = build(h3_cluster("h3", 443))
    assert cluster.upstream_tls is not None and cluster.upstream_tls.validation is None


def test_http3_needs_the_quic_transport_socket(ca: Path) -> None:
    body = h3_cluster("h3", 443, ca)
    del body["transport_socket"]
    with pytest.raises(ConfigError, match="HTTP3 requires a QuicUpstreamTransport"):
        build(body)


def test_the_quic_transport_socket_needs_http3(ca: Path) -> None:
    body = h3_cluster("h3", 443, ca)
    del body["typed_extension_protocol_options"]
    with pytest.raises(ConfigError, match="http3_protocol_options"):
        build(body)


def _context(body: dict[str, Any]) -> dict[str, Any]:
    return body["transport_socket"]["typed_config"]["upstream_tls_context"]  # type: ignore


@pytest.mark.parametrize(("change", "field"), [
    (lambda b: _context(b).update(max_session_keys=2),
     "typed_config.upstream_tls_context.max_session_keys"),
    (lambda b: _context(b)["common_tls_context"].update(alpn_protocols=["h2"]),
     "typed_config.upstream_tls_context.common_tls_context.alpn_protocols"),
    (lambda b: _context(b)["common_tls_context"].update(tls_params={
        "tls_maximum_protocol_version": "TLSv1_2"}),
     "typed_config.upstream_tls_context.common_tls_context.tls_params"),
    (lambda b: _context(b)["common_tls_context"]["validation_context"].update(
        match_typed_subject_alt_names=[{"san_type": "DNS", "matcher": {"exact": "a"}}]),
     "typed_config.upstream_tls_context.common_tls_context.validation_context."
     "match_typed_subject_alt_names"),
    (lambda b: b["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["explicit_http_config"][
        "http3_protocol_options"].update(quic_protocol_options={"max_concurrent_streams": 5}),
     "explicit_http_config.http3_protocol_options.quic_protocol_options"),
    (lambda b: b.update(health_checks=[{"timeout": "1s", "interval": "1s",
                                        "unhealthy_threshold": 1, "healthy_threshold": 1,
                                        "http_health_check": {"path": "/"}}]),
     "health_checks"),
])
def test_what_we_do_not_implement_is_refused_by_path(ca: Path, change: Any, field: str) -> None:
    body = copy.deepcopy(h3_cluster("h3", 443, ca))
    change(body)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build(body)
