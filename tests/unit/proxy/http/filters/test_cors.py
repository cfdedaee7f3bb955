"""The CORS filter as a plain object: which policy applies, preflights, response headers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from protos.errors import ConfigError
from proxy.codec.headers import Headers, ResponseHead
from proxy.http.filter import HttpStream, LocalReply
from proxy.http.filters.cors import CorsFactory, CorsFilter
from proxy.stats import Stats
from tests.unit.proxy.http.routes import request, route_config

POLICY = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"


def _policy(**fields: Any) -> dict[str, Any]:
    return {"@type": POLICY, **fields}


def _config(route_policy: dict[str, Any] | None = None, *, key: str = "cors",
            vhost_policy: dict[str, Any] | None = None) -> Any:
    route: dict[str, Any] = {"match": {"prefix": "/"}, "route": {"cluster": "c"}}
    if route_policy is not None:
        route["typed_per_filter_config"] = {key: route_policy}
    vhost: dict[str, Any] = {"name": "v", "domains": ["*"], "routes": [
        {"match": {"prefix": "/direct"}, "direct_response": {"status": 200}}, route]}
    if vhost_policy is not None:
        vhost["typed_per_filter_config"] = {key: vhost_policy}
    return route_config({"virtual_hosts": [vhost]})


def _run(config: Any, method: str = "GET", path: str = "/",
         headers: tuple[tuple[str, str], ...] = (), name: str = "cors"
         ) -> tuple[LocalReply | None, Headers, Stats]:
    stats = Stats()
    make = CorsFactory().create(CorsFactory().translate(_empty()),
                                SimpleNamespace(stats=stats),  # type: ignore[arg-type]
                                stat_prefix="p", name=name)
    cors = make()
    assert isinstance(cors, CorsFilter)
    stream = HttpStream(request(path, method=method, headers=headers), ("10.0.0.1", 1),
                        ("10.0.0.2", 80), 1, route_config=config)
    reply = cors.on_request_headers(stream)
    assert reply is None or isinstance(reply, LocalReply)
    head = ResponseHead(200, Headers())
    cors.on_response_headers(stream, head)
    return reply, head.headers, stats


def _empty() -> Any:
    from envoy.extensions.filters.http.cors.v3 import cors_pb2
    return cors_pb2.Cors()


ORIGIN = (("origin", "https://a.test"),)
PREFLIGHT = (*ORIGIN, ("access-control-request-method", "PUT"))


def test_the_route_policy_overrides_the_virtual_host_setting_by_setting() -> None:
    config = _config(_policy(allow_methods="PUT"), vhost_policy=_policy(
        allow_origin_string_match=[{"exact": "https://a.test"}], allow_methods="GET",
        max_age="60", allow_credentials=True))
    reply, _, stats = _run(config, "OPTIONS", headers=PREFLIGHT)
    assert reply is not None and reply.status == 200 and reply.verbatim
    assert reply.details == "cors_response"
    assert reply.headers.get("access-control-allow-methods") == "PUT"  # the route's
    assert reply.headers.get("access-control-max-age") == "60"  # the virtual host's
    assert reply.headers.get("access-control-allow-credentials") == "true"
    assert stats.counter("http.p.cors.origin_valid").value == 1


def test_simple_request_gets_allow_origin_only_for_allowed_origins() -> None:
    config = _config(_policy(allow_origin_string_match=[{"suffix": ".a.test"}],
                             expose_headers="x-e"))
    assert _run(config, headers=(("origin", "https://b.a.test"),))[1].items() == [
        ("access-control-allow-origin", "https://b.a.test"),
        ("access-control-expose-headers", "x-e")]
    reply, headers, stats = _run(config, headers=ORIGIN)
    assert reply is None and not headers.items()
    assert stats.counter("http.p.cors.origin_invalid").value == 1


def test_a_matcher_that_accepts_star_allows_any_origin() -> None:
    config = _config(_policy(allow_origin_string_match=[{"exact": "*"}]))
    assert _run(config, headers=ORIGIN)[1].get("access-control-allow-origin") == "https://a.test"


def test_refused_preflight_goes_upstream_unless_told_not_to() -> None:
    assert _run(_config(_policy()), "OPTIONS", headers=PREFLIGHT)[0] is None
    reply, _, _ = _run(_config(_policy(forward_not_matching_preflights=False)), "OPTIONS",
                       headers=PREFLIGHT)
    assert reply is not None and "access-control-allow-origin" not in reply.headers


def test_disabled_and_shadow_policies() -> None:
    off = {"default_value": {"numerator": 0}}
    everything = [{"prefix": "https://"}]
    assert _run(_config(_policy(allow_origin_string_match=everything, filter_enabled=off)),
                "OPTIONS", headers=PREFLIGHT)[0] is None
    reply, headers, stats = _run(_config(_policy(
        allow_origin_string_match=everything, filter_enabled=off,
        shadow_enabled={"default_value": {"numerator": 100}})), "OPTIONS", headers=PREFLIGHT)
    assert reply is None and not headers.items()
    assert stats.counter("http.p.cors.origin_valid").value == 1  # shadow mode counts


def test_no_policy_for_direct_responses_and_other_filter_names() -> None:
    policy = _policy(allow_origin_string_match=[{"prefix": "https://"}])
    assert _run(_config(vhost_policy=policy), "OPTIONS", "/direct", PREFLIGHT)[0] is None
    assert _run(_config(policy, key="someone-else"), "OPTIONS", headers=PREFLIGHT)[0] is None
    # Filed under the extension name, found by a filter with another name (Envoy's fallback).
    assert _run(_config(policy, key="envoy.filters.http.cors"), "OPTIONS",
                headers=PREFLIGHT)[0] is not None


def test_policy_fields_are_checked() -> None:
    with pytest.raises(ConfigError) as caught:
        _config(_policy(allow_origin_string_match=[{"prefix": ""}]))
    assert caught.value.field == ("virtual_hosts[0].routes[1].typed_per_filter_config[cors]"
                                  ".allow_origin_string_match[0].prefix")
