"""AuthorizationPolicy on a TCP port (compile/authz.py): network RBAC filters before the
tcp_proxy, run here with the sidecar's own network RBAC filter (proxy.network.rbac) on
connections from given peers; HTTP-only fields as istiod treats them (an ALLOW rule using
them is left out, a DENY rule loses them)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from envoy.extensions.filters.network.rbac.v3 import rbac_pb2

from controlplane.mesh.compile.compiler import MeshCompiler
from controlplane.resources import LISTENER
from protos.loader import parse_message
from proxy.http.peer import PeerTls
from proxy.network import rbac
from proxy.network.base import DownstreamConnection
from proxy.stats import Stats
from tests.unit.controlplane.mesh.helpers import as_dict, mesh_of, sidecar
from tests.unit.controlplane.mesh.test_mesh_security import (
    IDENTITY,
    MESH,
    SPIFFE,
    _admission,
    _authorization,
    listener,
    secured,
)

NO_SOCKET: Any = None  # the filter never touches the socket (unit tier: no sockets)
DB = 5432  # the `db` Service's postgresql port: opaque TCP


def network_filters(extra: str, port: int = DB, service: str = "db") -> list[dict[str, Any]]:
    """Every chain's filters but the terminal one (the same in each chain)."""
    chains = listener(secured(extra, caller=service), port)["filter_chains"]
    found = [[item for item in chain["filters"][:-1]] for chain in chains]
    assert all(chain["filters"][-1]["name"] == "envoy.filters.network.tcp_proxy"
               for chain in chains)
    assert all(item == found[0] for item in found)
    return found[0]


def verdict(filters: list[dict[str, Any]], peer: str | None, port: int = DB) -> str:
    """What the filters, in order, do with a connection's first byte."""
    connection = DownstreamConnection(
        sock=NO_SOCKET, remote_address=("10.1.2.3", 4000), local_address=("10.0.0.1", port),
        listener_name="inbound", connection_id=1,
        peer=PeerTls((SPIFFE + peer,)) if peer else None)
    for item in filters:
        assert item["name"] == "envoy.filters.network.rbac"
        body = {k: v for k, v in item["typed_config"].items() if k != "@type"}
        config = rbac.translate(parse_message(body, rbac_pb2.RBAC))
        make = rbac.NetworkRbacFactory().create(config, SimpleNamespace(stats=Stats()))
        if not make().on_data(connection, 1, False):
            return connection.termination_details
    return "allowed"


def test_allow_by_principal_on_a_tcp_port() -> None:
    filters = network_filters(_authorization("db", """
      rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/web]}}]}]"""))
    assert [f["typed_config"]["stat_prefix"] for f in filters] == ["tcp."]
    assert verdict(filters, "default/sa/web") == "allowed"
    assert verdict(filters, "default/sa/api") == "rbac_access_denied_matched_policy[none]"
    assert verdict(filters, None) == "rbac_access_denied_matched_policy[none]"


def test_no_policy_no_filter() -> None:
    assert network_filters("") == []


def test_allow_rule_with_http_only_fields_is_left_out() -> None:
    filters = network_filters(_authorization("db", """
      rules:
      - to: [{operation: {methods: [GET]}}]
      - from: [{source: {namespaces: [other]}}]
        when: [{key: 'request.headers[x-a]', values: [b]}]"""))
    rules = filters[0]["typed_config"]["rules"]
    assert rules == {}  # present: ALLOW (the default) with no policy, which allows nothing
    assert verdict(filters, "default/sa/web") == "rbac_access_denied_matched_policy[none]"


def test_allow_rule_left_out_even_when_only_another_operation_is_http() -> None:
    filters = network_filters(_authorization("db", """
      rules:
      - to: [{operation: {ports: ["5432"]}}, {operation: {paths: [/x]}}]
      - from: [{source: {principals: [cluster.local/ns/default/sa/api]}}]"""))
    assert list(filters[0]["typed_config"]["rules"]["policies"]) == \
        ["ns[default]-policy[db]-rule[1]"]
    assert verdict(filters, "default/sa/api") == "allowed"
    assert verdict(filters, "default/sa/web") == "rbac_access_denied_matched_policy[none]"


def test_deny_rule_loses_its_http_only_fields_and_denies_wider() -> None:
    filters = network_filters(_authorization("db", """
      action: DENY
      rules:
      - to: [{operation: {methods: [GET], ports: ["5432"]}}]"""))
    denied = "rbac_access_denied_matched_policy[ns[default]-policy[db]-rule[0]]"
    assert verdict(filters, "default/sa/web") == denied
    assert verdict(filters, None) == denied


def test_deny_rule_keeps_its_peer_part() -> None:
    filters = network_filters(_authorization("db", """
      action: DENY
      rules:
      - from: [{source: {principals: [cluster.local/ns/default/sa/web]}}]
        when: [{key: 'request.headers[x-a]', values: [b]}]"""))
    assert verdict(filters, "default/sa/web").endswith("[ns[default]-policy[db]-rule[0]]")
    assert verdict(filters, "default/sa/api") == "allowed"


def test_deny_then_allow_and_ports_decided_per_listener() -> None:
    filters = network_filters(_authorization("deny-web", """
      action: DENY
      rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/web]}}]}]""")
        + _authorization("allow-other-port", """
      rules: [{to: [{operation: {ports: ["1"]}}]}]"""))
    assert [f["typed_config"]["rules"].get("action", "ALLOW") for f in filters] == \
        ["DENY", "ALLOW"]
    assert verdict(filters, "default/sa/web").endswith("[ns[default]-policy[deny-web]-rule[0]]")
    # the ALLOW rule names another port: it cannot match here, so nothing is allowed
    assert verdict(filters, "default/sa/api") == "rbac_access_denied_matched_policy[none]"


def test_explain_runs_the_network_rbac_of_a_tcp_port() -> None:
    extra = _authorization("db", """
      selector: {matchLabels: {app: db}}
      rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/web]}}]}]""")
    assert _admission(extra, "web", "tcp://db:5432") == (
        "allowed over mTLS (PERMISSIVE): ALLOW policy rule ns[default]-policy[db]-rule[0]")
    assert _admission(extra, SPIFFE + "default/sa/api", "tcp://db:5432") == (
        "denied over mTLS (PERMISSIVE): no ALLOW policy rule matches (the connection is "
        "closed)")


def test_a_tls_passthrough_port_gets_network_rbac_too() -> None:
    extra = """---
apiVersion: v1
kind: Service
metadata: {name: vault, labels: {app: vault}}
spec: {ports: [{name: tls, port: 8443, appProtocol: tls}]}
""" + _authorization("vault", """
      selector: {matchLabels: {app: vault}}
      rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/web]}}]}]""")
    filters = network_filters(extra, port=8443, service="vault")
    assert len(filters) == 1
    assert verdict(filters, "default/sa/web", port=8443) == "allowed"
    assert verdict(filters, "default/sa/api", port=8443) != "allowed"


def test_a_policy_change_recompiles_the_tcp_listener() -> None:
    compiler = MeshCompiler(mesh_of(MESH), identity=IDENTITY)
    before = as_dict(compiler.compile_node(sidecar("db")), LISTENER.type_url, f"inbound|{DB}")
    compiler.update(mesh_of(MESH + _authorization("db", "{}")))
    after = as_dict(compiler.compile_node(sidecar("db")), LISTENER.type_url, f"inbound|{DB}")
    names = [[item["name"] for item in chain["filters"]] for chain in after["filter_chains"]]
    assert names[0] == ["envoy.filters.network.rbac", "envoy.filters.network.tcp_proxy"]
    assert all(len(chain["filters"]) == 1 for chain in before["filter_chains"])
