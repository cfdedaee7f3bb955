"""`envoy.filters.http.rbac`: allow or deny by source IP, headers, path and port.

Envoy doc: configuration/http/http_filters/rbac_filter, api config/rbac/v3/rbac.proto. The
matchers are proxy.model.rbac's, shared with the network filter (proxy.network.rbac); here
they read the request. ALLOW: requests that match no policy are denied; DENY: requests that
match a policy are denied. Denied requests get 403 "RBAC: access denied". `remote_ip` is the
trusted client address (XFF rules), `direct_remote_ip` the connection's peer. `authenticated`
is the downstream TLS peer (proxy.http.peer: URI SANs, then DNS SANs, then the subject).
Without `rules` the filter allows everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from protos.errors import ConfigError
from proxy.context import ServerContext
from proxy.http.filter import FilterMaker, HttpFilter, HttpStream, LocalReply, register_http_filter
from proxy.http.peer import PEER_KEY, PeerTls
from proxy.http.routing import header_matches
from proxy.model.fields import reject_unsupported
from proxy.model.matchers import translate_header_matcher
from proxy.model.rbac import Predicate, RbacInputs, Rules, response_detail, translate_rules


@dataclass(frozen=True)
class RbacConfig:
    rules: Rules[HttpStream] | None  # None when no rules (allow all)
    rules_stat_prefix: str = ""  # an extra prefix for the allowed/denied stats

    @property
    def action(self) -> str:
        return self.rules.action if self.rules is not None else ""


def _header(message: Any) -> Predicate[HttpStream]:
    matcher = translate_header_matcher(message)
    return lambda stream: header_matches(matcher, stream.request)


def _peer(stream: HttpStream) -> PeerTls | None:
    peer = stream.connection_state.get(PEER_KEY)
    return peer if isinstance(peer, PeerTls) else None


# `source_ip` (deprecated for direct_remote_ip) "will honor proxy protocol, but will not honor
# XFF" (rbac.proto); remote_address already carries the PROXY header's address.
HTTP_INPUTS: RbacInputs[HttpStream] = RbacInputs(
    local_address=lambda stream: stream.local_address,
    direct_remote_ip=lambda stream: stream.remote_address[0],
    source_ip=lambda stream: stream.remote_address[0],
    remote_ip=lambda stream: stream.trusted_client_address or stream.remote_address[0],
    peer=_peer,
    requested_server_name=None,
    header=_header,
    path=lambda stream: stream.request.path_only,
)


def translate(message: Message) -> RbacConfig:
    m: Any = message
    reject_unsupported(m, {"rules", "rules_stat_prefix"})
    if not m.HasField("rules"):
        return RbacConfig(None, m.rules_stat_prefix)
    try:
        rules = translate_rules(m.rules, HTTP_INPUTS)
    except ConfigError as error:
        raise error.within(field="rules") from error
    return RbacConfig(rules, m.rules_stat_prefix)


def matched_policy(config: RbacConfig, stream: HttpStream) -> str | None:
    return config.rules.matched_policy(stream) if config.rules is not None else None


class RbacFilter(HttpFilter):
    def __init__(self, config: RbacConfig, stats: Any, prefix: str) -> None:
        self.config = config
        self.stats = stats
        self.prefix = prefix

    def on_request_headers(self, stream: HttpStream) -> LocalReply | None:
        if not self.config.action or self.config.action == "LOG":
            return None
        matched = matched_policy(self.config, stream)
        allowed = (matched is not None) == (self.config.action == "ALLOW")
        self.stats.counter(f"{self.prefix}{'allowed' if allowed else 'denied'}").inc()
        if allowed:
            return None
        return LocalReply(403, "RBAC: access denied", details=response_detail(matched))


class RbacFactory:
    name = "envoy.filters.http.rbac"
    config_type = "envoy.extensions.filters.http.rbac.v3.RBAC"

    def translate(self, message: Message) -> RbacConfig:
        return translate(message)

    def create(self, config: RbacConfig, context: ServerContext, *,
               stat_prefix: str = "", name: str = "") -> FilterMaker:
        # Envoy 1.40: http.<HCM stat_prefix>.rbac.[<rules_stat_prefix>.]{allowed,denied}
        rules = f"{config.rules_stat_prefix}." if config.rules_stat_prefix else ""
        prefix = f"http.{stat_prefix}.rbac.{rules}"
        return lambda: RbacFilter(config, context.stats, prefix)


register_http_filter(RbacFactory())
