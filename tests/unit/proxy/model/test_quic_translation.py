"""QUIC listeners in the model: udp_listener_config.quic_options and the QUIC transport socket
translated with the protos' defaults; what we do not implement refused by field path."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
from envoy.config.listener.v3 import listener_pb2

import proxy.network.http_connection_manager  # noqa: F401  (registers the HCM factory)
from protos.errors import ConfigError
from protos.loader import parse_message
from proxy.model.listener import Listener, translate_listener
from proxy.model.quic import QuicListenerOptions
from tests.support.http3 import quic_bootstrap


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory: Path = tmp_path_factory.mktemp("quic")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=localhost", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    bootstrap = quic_bootstrap(10000, [{"match": {"prefix": "/"},
                                        "direct_response": {"status": 200}}], [], cert, key)
    result: dict[str, Any] = bootstrap["static_resources"]["listeners"][0]
    return result


def build(body: dict[str, Any]) -> Listener:
    return translate_listener(parse_message(body, listener_pb2.Listener))


def test_a_quic_listener_has_envoys_defaults(listener: dict[str, Any]) -> None:
    model = build(listener)
    assert model.quic == QuicListenerOptions()
    assert model.quic.idle_timeout == 300.0 and model.quic.max_concurrent_streams == 100
    assert model.filter_chains[0].tls is not None


def test_quic_options_are_translated(listener: dict[str, Any]) -> None:
    body = copy.deepcopy(listener)
    body["udp_listener_config"]["quic_options"] = {
        "idle_timeout": "7s", "crypto_handshake_timeout": "3s",
        "quic_protocol_options": {"max_concurrent_streams": 12,
                                  "initial_stream_window_size": 65536,
                                  "initial_connection_window_size": 131072}}
    options = build(body).quic
    assert options == QuicListenerOptions(idle_timeout=7.0, handshake_timeout=3.0,
                                          max_concurrent_streams=12,
                                          initial_stream_window_size=65536,
                                          initial_connection_window_size=131072)


@pytest.mark.parametrize(("change", "field"), [
    (lambda b: b["udp_listener_config"]["quic_options"].update(
        connection_id_generator_config={"name": "x"}),
     "udp_listener_config.quic_options.connection_id_generator_config"),
    (lambda b: b["udp_listener_config"]["quic_options"].update(
        quic_protocol_options={"connection_keepalive": {"max_interval": "1s"}}),
     "udp_listener_config.quic_options.quic_protocol_options.connection_keepalive"),
    # Without quic_options it is a connection-less UDP listener, which takes no chains.
    (lambda b: b["udp_listener_config"].pop("quic_options"), "filter_chains"),
    (lambda b: b["filter_chains"][0].pop("transport_socket"),
     "filter_chains[0].transport_socket"),
    (lambda b: b["filter_chains"][0]["transport_socket"]["typed_config"].update(
        enable_early_data=True), "filter_chains[0].transport_socket.typed_config"
                                 ".enable_early_data"),
    (lambda b: b["filter_chains"][0]["transport_socket"]["typed_config"].update(
        downstream_tls_context={"common_tls_context": {"tls_certificate_sds_secret_configs": [
            {"name": "default", "sds_config": {"ads": {}}}]}}),
     "filter_chains[0].transport_socket.typed_config.downstream_tls_context.common_tls_context"
     ".tls_certificate_sds_secret_configs"),
    (lambda b: b["filter_chains"][0]["filters"][0]["typed_config"].update(codec_type="HTTP2"),
     "filter_chains[0].filters"),
    (lambda b: b["filter_chains"][0]["filters"][0]["typed_config"].update(
        request_headers_timeout="1s"),
     "filter_chains[0].filters[0].typed_config.request_headers_timeout"),
    (lambda b: b["filter_chains"][0]["filters"][0]["typed_config"].update(
        http3_protocol_options={"allow_extended_connect": True}),
     "filter_chains[0].filters[0].typed_config.http3_protocol_options.allow_extended_connect"),
    (lambda b: b["filter_chains"][0].update(filter_chain_match={"server_names": ["a"]}),
     "filter_chains[0].filter_chain_match.server_names"),
    (lambda b: b["filter_chains"][0].update(filter_chain_match={"prefix_ranges": [
        {"address_prefix": "127.0.0.1", "prefix_len": 32}]}),
     "filter_chains[0].filter_chain_match.prefix_ranges"),
])
def test_what_we_do_not_implement_is_refused_by_path(listener: dict[str, Any], change: Any,
                                                     field: str) -> None:
    body = copy.deepcopy(listener)
    change(body)
    with pytest.raises(ConfigError) as caught:
        build(body)
    assert field in (caught.value.field or ""), caught.value


def test_http3_codec_on_a_tcp_listener_is_refused_like_envoy(listener: dict[str, Any]) -> None:
    body = copy.deepcopy(listener)
    del body["udp_listener_config"]
    del body["filter_chains"][0]["transport_socket"]
    body["address"]["socket_address"]["protocol"] = "TCP"
    with pytest.raises(ConfigError, match="HTTP/3 codec configured on non-QUIC listener"):
        build(body)


def test_network_rbac_before_the_hcm_of_a_quic_listener_is_refused(
        listener: dict[str, Any]) -> None:
    import proxy.network.rbac  # noqa: F401  (registers the network rbac read filter)

    body = copy.deepcopy(listener)
    body["filter_chains"][0]["filters"].insert(0, {
        "name": "envoy.filters.network.rbac", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC",
            "stat_prefix": "r"}})
    with pytest.raises(ConfigError) as caught:
        build(body)
    assert caught.value.field == "filter_chains[0].filters[0]"
