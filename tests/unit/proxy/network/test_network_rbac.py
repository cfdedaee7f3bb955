"""envoy.filters.network.rbac: translation (refusals name the field) and the per-connection
decision (ONE_TIME_ON_FIRST_BYTE vs CONTINUOUS, shadow rules, stats, termination details)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2

from protos.errors import ConfigError
from protos.loader import parse_message
from proxy.http.peer import PeerTls
from proxy.network.base import DownstreamConnection
from proxy.network.rbac import NetworkRbacFactory, translate
from proxy.stats import Stats

SPIFFE = "spiffe://cluster.local/ns/default/sa/frontend"
NO_SOCKET: Any = None  # the filter never touches the socket (unit tier: no sockets)


def config(body: dict[str, Any]) -> Any:
    return translate(parse_message({"stat_prefix": "tcp", **body}, rbac_pb2.RBAC))


def allow(*principals: dict[str, Any], permissions: Any = None, action: str = "ALLOW"
          ) -> dict[str, Any]:
    return {"action": action, "policies": {"p": {
        "permissions": permissions or [{"any": True}], "principals": list(principals)}}}


def connection(*, remote: str = "10.0.0.1", direct: str | None = None, port: int = 8080,
               local_ip: str = "10.0.0.9", peer: PeerTls | None = None,
               sni: str = "") -> DownstreamConnection:
    return DownstreamConnection(
        sock=NO_SOCKET, remote_address=(remote, 5555), local_address=(local_ip, port),
        listener_name="l", connection_id=1, server_name=sni, peer=peer,
        direct_remote_address=(direct, 5555) if direct else None)


def run(body: dict[str, Any], conn: DownstreamConnection, reads: int = 1
        ) -> tuple[list[bool], Stats]:
    stats = Stats()
    make = NetworkRbacFactory().create(config(body), SimpleNamespace(stats=stats))
    rbac = make()
    return [rbac.on_data(conn, 5, False) for _ in range(reads)], stats


def counters(stats: Stats) -> dict[str, int]:
    return {name: c.value for name, c in stats.counters.items() if c.value}


@pytest.mark.parametrize(("principal", "conn", "allowed"), [
    ({"authenticated": {"principal_name": {"exact": SPIFFE}}},
     connection(peer=PeerTls(uri_sans=(SPIFFE,))), True),
    ({"authenticated": {"principal_name": {"exact": SPIFFE}}},
     connection(peer=PeerTls(uri_sans=("spiffe://cluster.local/ns/default/sa/other",))),
     False),
    ({"authenticated": {"principal_name": {"exact": SPIFFE}}}, connection(), False),
    ({"authenticated": {}}, connection(peer=PeerTls()), True),  # any TLS peer
    ({"authenticated": {}}, connection(), False),
    ({"direct_remote_ip": {"address_prefix": "192.168.0.0", "prefix_len": 16}},
     connection(remote="10.0.0.1", direct="192.168.1.1"), True),
    ({"remote_ip": {"address_prefix": "192.168.0.0", "prefix_len": 16}},
     connection(remote="10.0.0.1", direct="192.168.1.1"), False),  # PROXY protocol's client
    ({"source_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}}, connection(), True),
    # prefix_len unset is 0 (Envoy's CidrRange): every address of the family
    ({"remote_ip": {"address_prefix": "192.0.2.1"}}, connection(remote="10.0.0.1"), True),
    ({"remote_ip": {"address_prefix": "192.0.2.1", "prefix_len": 32}},
     connection(remote="10.0.0.1"), False),
    ({"remote_ip": {"address_prefix": "::1"}}, connection(remote="10.0.0.1"), False),
    ({"not_id": {"any": True}}, connection(), False),
    ({"and_ids": {"ids": [{"any": True}, {"remote_ip": {"address_prefix": "10.0.0.1"}}]}},
     connection(), True),
    ({"or_ids": {"ids": [{"not_id": {"any": True}}]}}, connection(), False),
    # url_path: accepted, and with no request headers it never matches (Envoy's engine).
    ({"url_path": {"path": {"exact": "/"}}}, connection(), False),
    ({"not_id": {"url_path": {"path": {"exact": "/"}}}}, connection(), True),
])
def test_principals(principal: dict[str, Any], conn: DownstreamConnection,
                    allowed: bool) -> None:
    assert run({"rules": allow(principal)}, conn)[0] == [allowed]


@pytest.mark.parametrize(("permission", "conn", "allowed"), [
    ({"destination_port": 8080}, connection(port=8080), True),
    ({"destination_port": 8080}, connection(port=8081), False),
    ({"destination_port_range": {"start": 8000, "end": 8081}}, connection(port=8080), True),
    ({"destination_port_range": {"start": 8000, "end": 8080}}, connection(port=8080), False),
    ({"destination_ip": {"address_prefix": "10.0.0.0", "prefix_len": 24}},
     connection(local_ip="10.0.0.9"), True),
    ({"requested_server_name": {"suffix": ".example.com"}}, connection(sni="a.example.com"),
     True),
    ({"requested_server_name": {"exact": "a"}}, connection(), False),
    ({"not_rule": {"destination_port": 8080}}, connection(port=8080), False),
    ({"or_rules": {"rules": [{"destination_port": 1}, {"destination_port": 8080}]}},
     connection(port=8080), True),
])
def test_permissions(permission: dict[str, Any], conn: DownstreamConnection,
                     allowed: bool) -> None:
    assert run({"rules": allow({"any": True}, permissions=[permission])}, conn)[0] == [allowed]


def test_one_time_decides_once_and_counts_once() -> None:
    results, stats = run({"rules": allow({"not_id": {"any": True}})}, connection(), reads=3)
    assert results == [False, False, False]
    assert counters(stats) == {"tcp.rbac.denied": 1}


def test_continuous_evaluates_every_read() -> None:
    body = {**{"rules": allow({"any": True})}, "enforcement_type": "CONTINUOUS",
            "shadow_rules": allow({"not_id": {"any": True}})}
    stats = Stats()
    rbac = NetworkRbacFactory().create(
        translate(parse_message({"stat_prefix": "s.", **body}, rbac_pb2.RBAC)),
        SimpleNamespace(stats=stats))()
    assert [rbac.on_data(connection(), 1, False) for _ in range(3)] == [True] * 3
    assert counters(stats) == {"s.rbac.allowed": 3, "s.rbac.shadow_denied": 3}


def test_shadow_rules_only_count_under_their_prefix() -> None:
    body = {"shadow_rules": allow({"not_id": {"any": True}}),
            "shadow_rules_stat_prefix": "dry_"}
    results, stats = run(body, connection(), reads=2)
    assert results == [True, True]  # no enforced rules: allowed by default
    assert counters(stats) == {"tcp.rbac.dry_.shadow_denied": 1}


def test_termination_details_name_the_policy_with_whitespace_replaced() -> None:
    body = {"rules": {"action": "DENY", "policies": {"no  tabs\there": {
        "permissions": [{"any": True}], "principals": [{"any": True}]}}}}
    conn = connection()
    assert run(body, conn)[0] == [False]
    assert conn.termination_details == "rbac_access_denied_matched_policy[no__tabs_here]"
    allow_miss = connection()
    run({"rules": allow({"not_id": {"any": True}})}, allow_miss)
    assert allow_miss.termination_details == "rbac_access_denied_matched_policy[none]"


def test_log_action_allows_and_counts_allowed() -> None:
    results, stats = run({"rules": allow({"any": True}, action="LOG")}, connection())
    assert results == [True]
    assert counters(stats) == {"tcp.rbac.allowed": 1}


def test_no_rules_allows_without_stats() -> None:
    results, stats = run({}, connection())
    assert results == [True]
    assert counters(stats) == {}


@pytest.mark.parametrize(("body", "field"), [
    ({"rules": allow({"header": {"name": "x", "present_match": True}})},
     "rules.policies[p].principals[0].header"),
    ({"shadow_rules": allow({"any": True}, permissions=[
        {"and_rules": {"rules": [{"header": {"name": "x", "present_match": True}}]}}])},
     "shadow_rules.policies[p].permissions[0].and_rules.rules[0].header"),
    ({"rules": allow({"metadata": {"filter": "f"}})}, "rules.policies[p].principals[0].metadata"),
    ({"rules": {"policies": {"p": {"condition": {"const_expr": {"bool_value": True}}}}}},
     "rules.policies[p].condition"),
    ({"delay_deny": "1s"}, "delay_deny"),
    ({"matcher": {"on_no_match": {"action": {"name": "a", "typed_config": {
        "@type": "type.googleapis.com/envoy.config.rbac.v3.Action", "name": "x"}}}}},
     "matcher"),
])
def test_refusals_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config(body)
    assert caught.value.field == field


def test_stat_prefix_is_required() -> None:
    with pytest.raises(ConfigError) as caught:
        translate(parse_message({}, rbac_pb2.RBAC))
    assert caught.value.field == "stat_prefix"


def test_the_http_filter_shares_the_matchers_but_has_no_sni() -> None:
    """proxy.http.filters.rbac reads the same matcher model: destination_port_range works
    there too; requested_server_name, which it has no input for, is refused by path."""
    from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2

    from proxy.http.filters import rbac as http_rbac

    def build(permission: dict[str, Any]) -> Any:
        body = {"rules": {"policies": {"p": {"permissions": [permission],
                                             "principals": [{"any": True}]}}}}
        return http_rbac.translate(parse_message(body, http_rbac_pb2.RBAC))

    assert build({"destination_port_range": {"start": 1, "end": 2}}).action == "ALLOW"
    with pytest.raises(ConfigError) as caught:
        build({"requested_server_name": {"exact": "a"}})
    assert caught.value.field == "rules.policies[p].permissions[0].requested_server_name"
