"""`envoy.filters.network.rbac`: allow or close a connection by who it comes from (its
addresses, its verified TLS peer) and where it goes (port, IP, SNI).

Envoy doc: configuration/listeners/network_filters/rbac_filter, api
extensions/filters/network/rbac/v3/rbac.proto. A read filter (proxy.network.read_filters):
it decides on the first read of the downstream (the first byte after the TLS handshake, or
its FIN), so the peer certificate is known; until then the terminal filter runs (tcp_proxy
has already connected upstream and relays what the upstream says, as Envoy's does). The
matchers are proxy.model.rbac's, shared with the HTTP filter, reading the connection:

- principals: `any`, `authenticated` (URI SAN, DNS SAN, then subject of the verified peer
  certificate), `direct_remote_ip` (the socket's peer), `remote_ip` and `source_ip` (the
  client, after the PROXY protocol), `and_ids`/`or_ids`/`not_id`;
- permissions: `any`, `destination_port`, `destination_port_range`, `destination_ip`,
  `requested_server_name` (the SNI tls_inspector saw), `and_rules`/`or_rules`/`not_rule`;
- `header` is refused, as Envoy refuses it in this filter; `url_path` is accepted and, with
  no request headers, never matches (Envoy's engine evaluates it against empty headers).

`enforcement_type`: ONE_TIME_ON_FIRST_BYTE (default) decides once and keeps the result;
CONTINUOUS evaluates both engines on every read. A denied connection is closed without
flushing (Envoy's close(NoFlush)), its termination details are
`rbac_access_denied_matched_policy[<policy or none>]` (%CONNECTION_TERMINATION_DETAILS%).
Stats, as Envoy 1.40 names them: `<stat_prefix>.rbac.{allowed,denied}` and
`<stat_prefix>.rbac.<shadow_rules_stat_prefix>.shadow_{allowed,denied}` (each '.' is added
unless the prefix is empty or ends with one). `shadow_rules` only count. Refused by name:
`matcher`, `shadow_matcher` (the xDS matcher API), `delay_deny`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envoy.extensions.filters.network.rbac.v3 import rbac_pb2
from google.protobuf.message import Message

from protos.errors import ConfigError, unsupported
from proxy.context import ServerContext
from proxy.model.fields import reject_unsupported
from proxy.model.rbac import RbacInputs, Rules, response_detail, translate_rules
from proxy.network.base import DownstreamConnection, register_read

CONFIG_TYPE = "envoy.extensions.filters.network.rbac.v3.RBAC"

# rbac.proto: connection-level inputs only; no request, so no `header` and no path.
NETWORK_INPUTS: RbacInputs[DownstreamConnection] = RbacInputs(
    local_address=lambda c: c.local_address,
    direct_remote_ip=lambda c: (c.direct_remote_address or c.remote_address)[0],
    source_ip=lambda c: c.remote_address[0],
    remote_ip=lambda c: c.remote_address[0],
    peer=lambda c: c.peer,
    requested_server_name=lambda c: c.server_name,
    header=None,
    path=None,
)

_FIELDS = {"rules", "shadow_rules", "shadow_rules_stat_prefix", "stat_prefix",
           "enforcement_type"}


@dataclass(frozen=True)
class NetworkRbacConfig:
    stat_prefix: str
    rules: Rules[DownstreamConnection] | None  # None: no enforced engine, allow
    shadow_rules: Rules[DownstreamConnection] | None = None
    shadow_rules_stat_prefix: str = ""
    continuous: bool = False  # enforcement_type CONTINUOUS

    @property
    def scope(self) -> str:
        """Envoy's statPrefixJoin(stat_prefix, "rbac.")."""
        return _joined(self.stat_prefix) + "rbac."

    @property
    def shadow_scope(self) -> str:
        """Envoy 1.40: `<scope><shadow_rules_stat_prefix>.shadow_` (the '.' joined as above)."""
        return self.scope + _joined(self.shadow_rules_stat_prefix) + "shadow_"


def _joined(prefix: str) -> str:
    return prefix if not prefix or prefix.endswith(".") else prefix + "."


def translate(message: Message) -> NetworkRbacConfig:
    assert isinstance(message, rbac_pb2.RBAC)
    if message.HasField("delay_deny") and (message.delay_deny.seconds or
                                           message.delay_deny.nanos):
        raise unsupported("delay_deny")
    reject_unsupported(message, _FIELDS | {"delay_deny"})
    if not message.stat_prefix:
        raise ConfigError("stat_prefix is required", field="stat_prefix")
    return NetworkRbacConfig(
        stat_prefix=message.stat_prefix,
        rules=_rules(message, "rules"),
        shadow_rules=_rules(message, "shadow_rules"),
        shadow_rules_stat_prefix=message.shadow_rules_stat_prefix,
        continuous=message.enforcement_type == rbac_pb2.RBAC.CONTINUOUS,
    )


def _rules(message: Any, name: str) -> Rules[DownstreamConnection] | None:
    if not message.HasField(name):
        return None
    try:
        return translate_rules(getattr(message, name), NETWORK_INPUTS)
    except ConfigError as error:
        raise error.within(field=name) from error


class _Engine:
    """One engine (enforced or shadow) of a chain's filter, with its two counters."""

    def __init__(self, rules: Rules[DownstreamConnection], stats: Any, prefix: str) -> None:
        self.rules = rules
        self.allowed = stats.counter(prefix + "allowed")
        self.denied = stats.counter(prefix + "denied")

    def check(self, connection: DownstreamConnection) -> tuple[bool, str | None]:
        allowed, matched = self.rules.evaluate(connection)
        (self.allowed if allowed else self.denied).inc()
        return allowed, matched


class NetworkRbacFilter:
    """One connection's filter: Envoy's RoleBasedAccessControlFilter::onData."""

    def __init__(self, config: NetworkRbacConfig, engine: _Engine | None,
                 shadow: _Engine | None) -> None:
        self.config = config
        self.engine = engine
        self.shadow = shadow
        self.decided: bool | None = None  # the cached enforced result (ONE_TIME_ON_FIRST_BYTE)
        self.shadow_decided = False

    def __repr__(self) -> str:
        return f"NetworkRbacFilter({self.config.stat_prefix!r}, decided={self.decided})"

    def on_data(self, connection: DownstreamConnection, size: int, end_stream: bool) -> bool:
        continuous = self.config.continuous
        if self.shadow is not None and (continuous or not self.shadow_decided):
            self.shadow.check(connection)
            self.shadow_decided = True
        if self.engine is None:
            return True  # no engine: allowed by default
        if continuous or self.decided is None:
            self.decided, matched = self.engine.check(connection)
            if not self.decided:
                connection.termination_details = response_detail(matched)
        return self.decided


class NetworkRbacFactory:
    config_type = CONFIG_TYPE

    def translate(self, message: Message) -> NetworkRbacConfig:
        return translate(message)

    def create(self, config: NetworkRbacConfig, context: ServerContext) -> Any:
        stats = context.stats
        engine = (_Engine(config.rules, stats, config.scope)
                  if config.rules is not None else None)
        shadow = (_Engine(config.shadow_rules, stats, config.shadow_scope)
                  if config.shadow_rules is not None else None)
        return lambda: NetworkRbacFilter(config, engine, shadow)


register_read(NetworkRbacFactory())
