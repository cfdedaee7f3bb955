"""HTTP filters as plain objects: token bucket time, RBAC rules, config refusals."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2

from protos.errors import ConfigError
from protos.loader import parse_message
from proxy.http.filter import HttpStream
from proxy.http.filters import local_ratelimit, rbac
from proxy.http.filters.local_ratelimit import TokenBucket
from tests.unit.http.routes import request


def _stream(path: str = "/", remote: str = "10.0.0.1", authority: str = "a.test",
            headers: tuple[tuple[str, str], ...] = (), client: str = "") -> HttpStream:
    return HttpStream(request(path, authority=authority, headers=headers), (remote, 5555),
                      ("127.0.0.1", 8080), 1, trusted_client_address=client or remote)


def test_token_bucket_refills_per_interval() -> None:
    bucket = TokenBucket(max_tokens=2, tokens_per_fill=1, fill_interval=1.0, now=100.0)
    assert [bucket.consume(100.0) for _ in range(3)] == [True, True, False]
    assert not bucket.consume(100.9)
    assert bucket.consume(101.0)
    assert not bucket.consume(101.5)
    assert bucket.consume(105.0) and bucket.consume(105.0) and not bucket.consume(105.0)


def test_local_ratelimit_defaults_to_disabled() -> None:
    message = parse_message({"stat_prefix": "x", "token_bucket": {
        "max_tokens": 1, "fill_interval": "1s"}}, local_rate_limit_pb2.LocalRateLimit)
    config = local_ratelimit.translate(message)
    assert (config.enabled_percent, config.enforced_percent, config.status) == (0.0, 0.0, 429)
    with pytest.raises(ConfigError, match="descriptors"):
        local_ratelimit.translate(parse_message({"stat_prefix": "x", "token_bucket": {
            "max_tokens": 1, "fill_interval": "1s"}, "descriptors": [{"entries": [
                {"key": "k", "value": "v"}], "token_bucket": {"max_tokens": 1,
                                                              "fill_interval": "1s"}}]},
            local_rate_limit_pb2.LocalRateLimit))


def test_local_ratelimit_without_token_bucket_limits_nothing() -> None:
    """Valid in the HCM's config (Envoy: "no token bucket is fine for the global config"):
    every request passes and counts enabled/ok, with no x-ratelimit headers."""
    from types import SimpleNamespace

    from proxy.stats import Stats

    config = local_ratelimit.translate(parse_message({
        "stat_prefix": "x", "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
        "filter_enabled": {"default_value": {"numerator": 100}},
        "filter_enforced": {"default_value": {"numerator": 100}}},
        local_rate_limit_pb2.LocalRateLimit))
    stats = Stats()
    make = local_ratelimit.LocalRateLimitFactory().create(
        config, SimpleNamespace(stats=stats), clock=lambda: 0.0)  # type: ignore[arg-type]
    for _ in range(3):
        limiter = make()
        assert limiter.on_request_headers(_stream()) is None
    assert stats.counter("x.http_local_rate_limit.enabled").value == 3
    assert stats.counter("x.http_local_rate_limit.ok").value == 3


def _rbac(rules: dict[str, Any]) -> rbac.RbacConfig:
    return rbac.translate(parse_message({"rules": rules}, rbac_pb2.RBAC))


def test_rbac_allow_policy_by_source_range_and_path() -> None:
    config = _rbac({"action": "ALLOW", "policies": {"admins": {
        "permissions": [{"url_path": {"path": {"prefix": "/admin"}}}],
        "principals": [{"remote_ip": {"address_prefix": "10.10.1.0", "prefix_len": 24}}]},
        "public": {"permissions": [{"not_rule": {"url_path": {"path": {"prefix": "/admin"}}}}],
                   "principals": [{"any": True}]}}})
    assert rbac.matched_policy(config, _stream("/admin/x", "10.10.1.9")) == "admins"
    assert rbac.matched_policy(config, _stream("/admin/x", "10.10.2.9")) is None
    assert rbac.matched_policy(config, _stream("/app", "192.0.2.1")) == "public"
    # remote_ip is the trusted client (XFF), direct_remote_ip the peer
    assert rbac.matched_policy(config, _stream("/admin", "127.0.0.1", client="10.10.1.3")) \
        == "admins"


def test_rbac_source_ip_is_the_peer_not_the_forwarded_client() -> None:
    # rbac.proto: source_ip honours PROXY protocol but not XFF, like direct_remote_ip.
    for field in ("source_ip", "direct_remote_ip"):
        config = _rbac({"action": "ALLOW", "policies": {"net": {
            "permissions": [{"any": True}],
            "principals": [{field: {"address_prefix": "10.10.1.0", "prefix_len": 24}}]}}})
        assert rbac.matched_policy(config, _stream("/", "10.10.1.9")) == "net"
        assert rbac.matched_policy(config, _stream("/", "127.0.0.1", client="10.10.1.3")) is None


def test_rbac_filter_verdicts() -> None:
    from proxy.stats import Stats

    config = _rbac({"action": "DENY", "policies": {"no-debug": {
        "permissions": [{"and_rules": {"rules": [
            {"header": {"name": "x-debug", "present_match": True}},
            {"destination_port": 8080}]}}],
        "principals": [{"any": True}]}}})
    deny = rbac.RbacFilter(config, Stats(), "http.")
    reply = deny.on_request_headers(_stream(headers=(("x-debug", "1"),)))
    assert reply is not None and reply.status == 403
    assert deny.on_request_headers(_stream()) is None


def test_rbac_refuses_what_it_cannot_check() -> None:
    with pytest.raises(ConfigError, match="authenticated"):
        _rbac({"action": "ALLOW", "policies": {"p": {"permissions": [{"any": True}],
                                                      "principals": [{"authenticated": {}}]}}})
    with pytest.raises(ConfigError, match="shadow_rules"):
        rbac.translate(parse_message({"shadow_rules": {}}, rbac_pb2.RBAC))
