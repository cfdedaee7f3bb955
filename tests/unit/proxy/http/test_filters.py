"""HTTP filters as plain objects: token bucket time, RBAC rules, config refusals."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2

from protos.errors import ConfigError
from protos.loader import parse_message
from proxy.codec.headers import Headers, ResponseHead
from proxy.http.filter import HttpStream
from proxy.http.filters import local_ratelimit, rbac
from proxy.http.filters.local_ratelimit import TokenBucket
from proxy.http.peer import PEER_KEY, PeerTls, peer_from_cert
from proxy.stats import Stats
from tests.unit.proxy.http.routes import request


def _stream(path: str = "/", remote: str = "10.0.0.1", authority: str = "a.test",
            headers: tuple[tuple[str, str], ...] = (), client: str = "") -> HttpStream:
    return HttpStream(request(path, authority=authority, headers=headers), (remote, 5555),
                      ("127.0.0.1", 8080), 1, trusted_client_address=client or remote)


def test_token_bucket_refills_pro_rata() -> None:
    # 2 tokens per 2 s is 1 token a second, accruing continuously (Envoy 1.40's
    # AtomicTokenBucketImpl), not 2 tokens at each 2 s tick.
    bucket = TokenBucket(max_tokens=4, tokens_per_fill=2, fill_interval=2.0, now=100.0)
    assert [bucket.consume(100.0) for _ in range(5)] == [True] * 4 + [False]
    assert not bucket.consume(100.9)
    assert bucket.consume(101.0)  # one second: one token, half a fill interval in
    assert not bucket.consume(101.5)
    assert (bucket.remaining(101.5), bucket.reset_seconds(101.5)) == (0, 1)
    assert bucket.consume(102.2) and not bucket.consume(102.2)
    assert bucket.remaining(102.2) == 0 and bucket.remaining(104.0) == 2
    assert bucket.remaining(1000.0) == 4  # capped at max_tokens
    assert [bucket.consume(1000.0) for _ in range(5)] == [True] * 4 + [False]


def test_token_bucket_reset_counts_down_to_the_next_token() -> None:
    # x-ratelimit-reset: 0 while a whole token is left, else the seconds to the next one,
    # rounded up (Envoy 1.40 sent 4, 4, 3, 1 for these instants of a 1-per-4 s bucket).
    bucket = TokenBucket(max_tokens=2, tokens_per_fill=1, fill_interval=4.0, now=0.0)
    assert bucket.reset_seconds(0.0) == 0 and bucket.consume(0.0)
    assert (bucket.remaining(0.0), bucket.reset_seconds(0.0)) == (1, 0)
    assert bucket.consume(0.0)
    assert [bucket.reset_seconds(t) for t in (0.0, 0.9, 1.5, 3.5, 4.0)] == [4, 4, 3, 1, 0]


def _limiter(per_connection: bool = False, bucket: bool = True,
             clock: list[float] | None = None) -> Any:
    fields: dict[str, Any] = {
        "stat_prefix": "rl", "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
        "filter_enabled": {"default_value": {"numerator": 100}},
        "filter_enforced": {"default_value": {"numerator": 100}},
        "local_rate_limit_per_downstream_connection": per_connection}
    if bucket:
        fields["token_bucket"] = {"max_tokens": 1, "fill_interval": "10s"}
    config = local_ratelimit.translate(parse_message(fields, local_rate_limit_pb2.LocalRateLimit))
    now = clock if clock is not None else [0.0]
    context = SimpleNamespace(stats=Stats())
    make = local_ratelimit.LocalRateLimitFactory().create(
        config, context, clock=lambda: now[0])  # type: ignore[arg-type]
    return make, context.stats


def _statuses(make: Any, streams: list[HttpStream]) -> list[int]:
    replies = [make().on_request_headers(stream) for stream in streams]
    return [200 if reply is None else reply.status for reply in replies]


def test_local_ratelimit_bucket_per_filter_chain_or_per_connection() -> None:
    one, two = _stream(), _stream()
    two.connection_state = one.connection_state  # a second stream on the same connection
    other = _stream()  # another connection
    shared, _ = _limiter()
    assert _statuses(shared, [one, two, other]) == [200, 429, 429]
    per_connection, _ = _limiter(per_connection=True)
    assert _statuses(per_connection, [one, two, other]) == [200, 429, 200]


def test_local_ratelimit_without_token_bucket_allows_everything() -> None:
    # Envoy 1.40 accepts a filter without token_bucket: no default bucket, every request
    # counted enabled and ok, no x-ratelimit-* headers.
    make, stats = _limiter(bucket=False)
    stream = _stream()
    assert _statuses(make, [stream, stream, stream]) == [200, 200, 200]
    assert stats.counter("rl.http_local_rate_limit.ok").value == 3
    head = ResponseHead(200, Headers())
    make().on_response_headers(stream, head)
    assert head.headers.get("x-ratelimit-limit") is None


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
    with pytest.raises(ConfigError, match="requested_server_name"):
        _rbac({"action": "ALLOW", "policies": {"p": {"permissions": [
            {"requested_server_name": {"exact": "a"}}], "principals": [{"any": True}]}}})
    with pytest.raises(ConfigError, match="shadow_rules"):
        rbac.translate(parse_message({"shadow_rules": {}}, rbac_pb2.RBAC))


def _tls_stream(peer: PeerTls | None, path: str = "/") -> HttpStream:
    stream = _stream(path)
    if peer is not None:
        stream.connection_state[PEER_KEY] = peer
    return stream


def test_rbac_authenticated_principal_is_uri_san_then_dns_san_then_subject() -> None:
    config = _rbac({"action": "ALLOW", "policies": {
        "spiffe": {"permissions": [{"any": True}], "principals": [{"authenticated": {
            "principal_name": {"exact": "spiffe://cluster.local/ns/default/sa/a"}}}]},
        "dns": {"permissions": [{"any": True}], "principals": [{"authenticated": {
            "principal_name": {"exact": "b.example"}}}]},
        "subject": {"permissions": [{"any": True}], "principals": [{"authenticated": {
            "principal_name": {"exact": "CN=c,O=Acme\\, Inc"}}}]}}})
    spiffe = PeerTls(("spiffe://cluster.local/ns/default/sa/a",), ("x.example",), "CN=x")
    assert rbac.matched_policy(config, _tls_stream(spiffe)) == "spiffe"
    assert rbac.matched_policy(config, _tls_stream(PeerTls((), ("b.example",), "CN=x"))) \
        == "dns"
    cert = {"subject": ((("organizationName", "Acme, Inc"),), (("commonName", "c"),))}
    assert rbac.matched_policy(config, _tls_stream(peer_from_cert(cert))) == "subject"
    wrong = PeerTls(("spiffe://cluster.local/ns/default/sa/b",))
    assert rbac.matched_policy(config, _tls_stream(wrong)) is None
    assert rbac.matched_policy(config, _tls_stream(None)) is None  # plaintext


def test_rbac_authenticated_without_a_name_is_any_tls_connection() -> None:
    config = _rbac({"action": "ALLOW", "policies": {"tls": {
        "permissions": [{"any": True}], "principals": [{"authenticated": {}}]}}})
    assert rbac.matched_policy(config, _tls_stream(PeerTls())) == "tls"
    assert rbac.matched_policy(config, _tls_stream(None)) is None


def test_peer_from_a_verified_certificate() -> None:
    cert = {"subject": ((("countryName", "US"),), (("commonName", "a"),)),
            "subjectAltName": (("DNS", "a.test"), ("URI", "spiffe://td/ns/n/sa/a"))}
    peer = peer_from_cert(cert)
    assert peer.principal_candidates() == ("spiffe://td/ns/n/sa/a", "a.test", "CN=a,C=US")
    assert peer_from_cert({}).principal_candidates() == ("",)
