"""envoy.transport_sockets.tls -> model + ssl.SSLContext; PROXY protocol upstream wrapper."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2

from protos.errors import ConfigError
from protos.loader import parse_message
from proxy.model.tls import translate_downstream_tls, translate_upstream_tls
from tests.integration.proxy.helpers import DOWNSTREAM_TLS, UPSTREAM_TLS, tls_files

PROXY_PROTOCOL = ("type.googleapis.com/envoy.extensions.transport_sockets.proxy_protocol.v3."
                  "ProxyProtocolUpstreamTransport")


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    return tls_files(tmp_path_factory.mktemp("tls"), ["server.test"])


def socket_message(type_url: str, body: dict[str, Any]) -> base_pb2.TransportSocket:
    return parse_message({"name": "envoy.transport_sockets.tls",
                          "typed_config": {"@type": type_url, **body}},
                         base_pb2.TransportSocket)


def certificate(pem: dict[str, tuple[Path, Path]], inline: bool = False) -> dict[str, Any]:
    cert, key = pem["server.test"]
    if inline:
        return {"certificate_chain": {"inline_string": cert.read_text()},
                "private_key": {"inline_string": key.read_text()}}
    return {"certificate_chain": {"filename": str(cert)}, "private_key": {"filename": str(key)}}


@pytest.mark.parametrize("inline", [False, True])
def test_downstream_context_with_alpn_and_client_certs(pem: dict, inline: bool) -> None:
    model = translate_downstream_tls(socket_message(DOWNSTREAM_TLS, {
        "require_client_certificate": True,
        "common_tls_context": {
            "tls_certificates": [certificate(pem, inline)],
            "alpn_protocols": ["h2", "http/1.1"],
            "validation_context": {"trusted_ca": {"filename": str(pem["ca"][0])}},
        }}))
    assert model is not None
    assert model.alpn_protocols == ("h2", "http/1.1")
    assert model.require_client_certificate
    assert model.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert model.ssl_context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_upstream_context_verifies_against_ca_without_hostname_check(pem: dict) -> None:
    model = translate_upstream_tls(socket_message(UPSTREAM_TLS, {
        "sni": "server.test",
        "common_tls_context": {"validation_context": {
            "trusted_ca": {"filename": str(pem["ca"][0])}}}}))
    assert model is not None and model.ssl_context is not None
    assert model.sni == "server.test"
    assert model.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert not model.ssl_context.check_hostname  # Envoy checks SANs only when configured
    assert model.proxy_protocol_version is None


def test_proxy_protocol_wrapping_raw_buffer_and_tls() -> None:
    plain = translate_upstream_tls(socket_message(PROXY_PROTOCOL, {
        "config": {"version": "V2"},
        "transport_socket": {"name": "envoy.transport_sockets.raw_buffer", "typed_config": {
            "@type": "type.googleapis.com/"
                     "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}}}))
    assert plain is not None
    assert (plain.proxy_protocol_version, plain.ssl_context) == (2, None)
    wrapped = translate_upstream_tls(socket_message(PROXY_PROTOCOL, {
        "config": {"version": "V1"},
        "transport_socket": {"name": "tls", "typed_config": {"@type": UPSTREAM_TLS,
                                                            "sni": "x.test"}}}))
    assert wrapped is not None and wrapped.ssl_context is not None
    assert (wrapped.proxy_protocol_version, wrapped.sni) == (1, "x.test")


@pytest.mark.parametrize(("body", "field"), [
    ({"require_sni": True}, "require_sni"),
    ({"common_tls_context": {"tls_certificate_sds_secret_configs": [
        {"name": "s", "sds_config": {"path_config_source": {"path": "/x"}}}]}},
     "common_tls_context.tls_certificate_sds_secret_configs[0].sds_config.path_config_source"),
    ({"common_tls_context": {"tls_certificate_sds_secret_configs": [
        {"name": "s", "sds_config": {"api_config_source": {"api_type": "REST"}}}]}},
     "common_tls_context.tls_certificate_sds_secret_configs[0].sds_config.api_config_source"
     ".api_type"),
    ({"common_tls_context": {"tls_certificate_sds_secret_configs": [{"name": "missing"}]}},
     "common_tls_context.tls_certificate_sds_secret_configs[0].name"),
    ({"common_tls_context": {"tls_params": {"cipher_suites": ["AES128-SHA"]}}},
     "common_tls_context.tls_params.cipher_suites"),
    ({"common_tls_context": {"tls_certificates": [{"certificate_chain": {
        "filename": "/nonexistent.pem"}, "private_key": {"filename": "/nonexistent.key"}}]}},
     "common_tls_context.tls_certificates[0].certificate_chain.filename"),
])
def test_downstream_errors_name_the_field(body: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        translate_downstream_tls(socket_message(DOWNSTREAM_TLS, body))
    assert caught.value.field == field


def test_bad_key_is_a_config_error(pem: dict) -> None:
    broken = certificate(pem, inline=True)
    broken["private_key"] = {"inline_string": "-----BEGIN PRIVATE KEY-----\nAAAA\n"
                                              "-----END PRIVATE KEY-----\n"}
    with pytest.raises(ConfigError) as caught:
        translate_downstream_tls(socket_message(DOWNSTREAM_TLS, {
            "common_tls_context": {"tls_certificates": [broken]}}))
    assert caught.value.field == "common_tls_context.tls_certificates[0]"


def test_raw_buffer_is_plain() -> None:
    raw = parse_message({"name": "envoy.transport_sockets.raw_buffer"}, base_pb2.TransportSocket)
    assert translate_upstream_tls(raw) is None


def test_static_secrets_are_resolved_by_name(pem: dict) -> None:
    from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

    from proxy.model.secret import set_static_secrets, translate_secret

    secrets = [
        translate_secret(parse_message({"name": "server-cert",
                                        "tls_certificate": certificate(pem)},
                                       secret_pb2.Secret)),
        translate_secret(parse_message({"name": "ca", "validation_context": {
            "trusted_ca": {"filename": str(pem["ca"][0])}}}, secret_pb2.Secret)),
    ]
    set_static_secrets(secrets)
    try:
        model = translate_downstream_tls(socket_message(DOWNSTREAM_TLS, {
            "common_tls_context": {
                "tls_certificate_sds_secret_configs": [{"name": "server-cert"}],
                "validation_context_sds_secret_config": {"name": "ca"}}}))
        assert model is not None
        assert model.certificate == secrets[0].tls_certificate
        assert model.ssl_context.verify_mode == ssl.CERT_OPTIONAL  # client cert requested
    finally:
        set_static_secrets([])
