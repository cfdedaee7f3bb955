"""The sidecar's SDS state (no sockets): which secrets it asks for, warming until they came,
a bad secret NACKed with nothing changed, a new version loaded into the same SSL context,
private keys redacted in /config_dump, and sds_config sources checked."""

from __future__ import annotations

import datetime
import json
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from controlplane.ca import CertificateAuthority, IdentitySecrets
from protos.errors import ConfigError
from protos.loader import pack_any, parse_message
from protos.registry import SECRET
from proxy.bootstrap import translate_bootstrap
from proxy.model.secret import DYNAMIC
from proxy.server import Server

NOW = datetime.datetime.now(datetime.UTC)
TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"


@pytest.fixture(autouse=True)
def fresh_secrets() -> Iterator[None]:
    DYNAMIC.clear()
    yield
    DYNAMIC.clear()


def static_cluster(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "STATIC", "connect_timeout": "1s", **extra,
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                             "port_value": 1}}}}]}]}}


def bootstrap(source: dict[str, Any], *, ads: bool = True) -> Any:
    common = {"tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": source}],
              "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": source}}
    body: dict[str, Any] = {"static_resources": {"clusters": [
        static_cluster("xds"),
        static_cluster("peer", transport_socket={
            "name": "envoy.transport_sockets.tls",
            "typed_config": {"@type": TLS, "common_tls_context": common}})]}}
    if ads:
        body["dynamic_resources"] = {"ads_config": {
            "api_type": "GRPC", "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]}}
    return translate_bootstrap(parse_message(body, bootstrap_pb2.Bootstrap))


def secrets(now: datetime.datetime = NOW) -> tuple[Any, ...]:
    authority = CertificateAuthority.create_root(now)
    issued = IdentitySecrets(authority).secrets_for("default", "web", now)
    return tuple(pack_any(message) for message in issued.values())


def test_a_cluster_waits_for_its_secrets_and_loads_each_version_in_place() -> None:
    server = Server(bootstrap({"ads": {}}))
    assert list(server.wanted_names(SECRET)) == ["ROOTCA", "default"]
    assert server._waiting_secrets() == {"ROOTCA", "default"}
    assert not server._warm()
    tls = server.static_clusters["peer"].upstream_tls
    assert tls is not None and tls.binding is not None and tls.ssl_context is not None
    context = tls.ssl_context
    server.apply(SECRET, "1", secrets())
    assert server._waiting_secrets() == set()
    assert context.verify_mode == ssl.CERT_REQUIRED  # ROOTCA loaded: the server is verified
    first = tls.binding.certificate
    assert first is not None
    server.apply(SECRET, "2", secrets())
    assert tls.ssl_context is context  # the same context: open connections keep theirs
    assert tls.binding.certificate is not None and tls.binding.certificate != first


def test_a_secret_that_does_not_load_is_nacked_and_changes_nothing() -> None:
    server = Server(bootstrap({"ads": {}}))
    server.apply(SECRET, "1", secrets())
    tls = server.static_clusters["peer"].upstream_tls
    assert tls is not None and tls.binding is not None
    held = tls.binding.certificate
    bad = secret_pb2.Secret(name="default")
    bad.tls_certificate.certificate_chain.inline_bytes = b"not a certificate"
    bad.tls_certificate.private_key.inline_bytes = b"not a key"
    with pytest.raises(ConfigError) as caught:
        server.apply(SECRET, "2", (pack_any(bad),))
    assert (caught.value.source, caught.value.resource) == ("SDS", "default")
    assert tls.binding.certificate == held
    assert server.state.versions[SECRET] == "1"


def test_private_keys_are_redacted_in_config_dump() -> None:
    server = Server(bootstrap({"ads": {}}))
    server.apply(SECRET, "1", secrets())
    text = json.dumps(server.config_dump())
    assert "PRIVATE KEY" not in text
    dump = server.config_dump()["configs"]
    secrets_dump = next(c for c in dump if c["@type"].endswith("SecretsConfigDump"))
    by_name = {item["name"]: item for item in secrets_dump["dynamic_active_secrets"]}
    assert by_name["default"]["version_info"] == "1"
    assert by_name["default"]["secret"]["tls_certificate"]["private_key"] == {
        "inline_bytes": "W3JlZGFjdGVkXQ=="}


def test_sds_over_ads_needs_ads() -> None:
    server = Server(bootstrap({"ads": {}}, ads=False))
    with pytest.raises(ConfigError, match="ads_config"):
        server._check_sds_sources(server.secret_refs())


def test_an_sds_cluster_must_be_static() -> None:
    source = {"api_config_source": {"api_type": "GRPC", "grpc_services": [
        {"envoy_grpc": {"cluster_name": "nowhere"}}]}}
    server = Server(bootstrap(source, ads=False))
    with pytest.raises(ConfigError, match="not a static cluster"):
        server._check_sds_sources(server.secret_refs())


def test_a_context_waiting_for_its_trusted_ca_verifies_nobody() -> None:
    """Fail closed: until ROOTCA arrives, the cluster's context requires a certificate it
    cannot verify (an empty store), instead of connecting unverified."""
    server = Server(bootstrap({"ads": {}}))
    tls = server.static_clusters["peer"].upstream_tls
    assert tls is not None and tls.ssl_context is not None
    assert tls.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert tls.ssl_context.cert_store_stats()["x509_ca"] == 0
