"""Filter chain selection, Envoy's order (listener_components.proto, FilterChainMatch).

Criteria are applied in this order; at each step the most specific chains that match survive,
falling back to chains that leave the criterion unset, and there is no backtracking: if no chain
survives a step, the listener's `default_filter_chain` is used (or the connection is closed).

1. destination port  2. destination IP (longest prefix)  3. server name (exact, then the
longest `*.suffix` wildcard)  4. transport protocol  5. application protocols (ALPN)
6. source type  7. source IP (longest prefix)  8. source port.

Pure functions of the connection's facts: no sockets, unit-tested directly.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from proxy.model.listener import (
    SOURCE_ANY,
    SOURCE_EXTERNAL,
    SOURCE_SAME_IP_OR_LOOPBACK,
    FilterChain,
    FilterChainMatch,
    Listener,
    Network,
)

_MATCH_ALL = FilterChainMatch()


@dataclass(frozen=True)
class ConnectionFacts:
    """What the listener knows about a connection after its listener filters ran."""

    destination: tuple[str, int]
    source: tuple[str, int]
    server_name: str = ""
    transport_protocol: str = "raw_buffer"
    application_protocols: tuple[str, ...] = ()


Step = Callable[[list[FilterChain], ConnectionFacts], list[FilterChain]]


def select_filter_chain(listener: Listener, facts: ConnectionFacts) -> FilterChain | None:
    if len(listener.filter_chains) == 1 and listener.filter_chains[0].match == _MATCH_ALL:
        return listener.filter_chains[0]  # the common single catch-all chain
    candidates = list(listener.filter_chains)
    for step in _STEPS:
        candidates = step(candidates, facts)
        if not candidates:
            return listener.default_filter_chain
    return candidates[0]


def _exact_or_unset(candidates: list[FilterChain], matches: Callable[[FilterChain], bool],
                    unset: Callable[[FilterChain], bool]) -> list[FilterChain]:
    specific = [chain for chain in candidates if not unset(chain) and matches(chain)]
    return specific or [chain for chain in candidates if unset(chain)]


def _by_destination_port(candidates: list[FilterChain], facts: ConnectionFacts
                         ) -> list[FilterChain]:
    return _exact_or_unset(candidates,
                           lambda c: c.match.destination_port == facts.destination[1],
                           lambda c: c.match.destination_port is None)


def _longest_prefix(candidates: list[FilterChain], address: str,
                    ranges: Callable[[FilterChain], tuple[Network, ...]]) -> list[FilterChain]:
    if not any(ranges(chain) for chain in candidates):
        return candidates  # nothing to compare: skip parsing the address (hot path)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return [chain for chain in candidates if not ranges(chain)]
    best = -1
    best_chains: list[FilterChain] = []
    for chain in candidates:
        lengths = [n.prefixlen for n in ranges(chain) if n.version == ip.version and ip in n]
        if not lengths:
            continue
        length = max(lengths)
        if length > best:
            best, best_chains = length, [chain]
        elif length == best:
            best_chains.append(chain)
    return best_chains or [chain for chain in candidates if not ranges(chain)]


def _by_destination_ip(candidates: list[FilterChain], facts: ConnectionFacts
                       ) -> list[FilterChain]:
    return _longest_prefix(candidates, facts.destination[0], lambda c: c.match.prefix_ranges)


def _by_server_name(candidates: list[FilterChain], facts: ConnectionFacts) -> list[FilterChain]:
    name = facts.server_name.lower().rstrip(".")
    if name:
        exact = [c for c in candidates if name in c.match.server_names]
        if exact:
            return exact
        # Wildcards: `*.b.c` matches `a.b.c` (and `x.a.b.c`); the longest suffix wins.
        labels = name.split(".")
        for start in range(1, len(labels)):
            wildcard = "*." + ".".join(labels[start:])
            found = [c for c in candidates if wildcard in c.match.server_names]
            if found:
                return found
    return [chain for chain in candidates if not chain.match.server_names]


def _by_transport_protocol(candidates: list[FilterChain], facts: ConnectionFacts
                           ) -> list[FilterChain]:
    return _exact_or_unset(candidates,
                           lambda c: c.match.transport_protocol == facts.transport_protocol,
                           lambda c: not c.match.transport_protocol)


def _by_application_protocols(candidates: list[FilterChain], facts: ConnectionFacts
                              ) -> list[FilterChain]:
    for protocol in facts.application_protocols:
        found = [c for c in candidates if protocol in c.match.application_protocols]
        if found:
            return found
    return [chain for chain in candidates if not chain.match.application_protocols]


def _is_local(facts: ConnectionFacts) -> bool:
    try:
        source = ipaddress.ip_address(facts.source[0])
    except ValueError:
        return False
    return source.is_loopback or facts.source[0] == facts.destination[0]


def _by_source_type(candidates: list[FilterChain], facts: ConnectionFacts) -> list[FilterChain]:
    if all(chain.match.source_type == SOURCE_ANY for chain in candidates):
        return candidates
    wanted = SOURCE_SAME_IP_OR_LOOPBACK if _is_local(facts) else SOURCE_EXTERNAL
    return _exact_or_unset(candidates, lambda c: c.match.source_type == wanted,
                           lambda c: c.match.source_type == SOURCE_ANY)


def _by_source_ip(candidates: list[FilterChain], facts: ConnectionFacts) -> list[FilterChain]:
    return _longest_prefix(candidates, facts.source[0], lambda c: c.match.source_prefix_ranges)


def _by_source_port(candidates: list[FilterChain], facts: ConnectionFacts) -> list[FilterChain]:
    return _exact_or_unset(candidates, lambda c: facts.source[1] in c.match.source_ports,
                           lambda c: not c.match.source_ports)


_STEPS: tuple[Step, ...] = (
    _by_destination_port, _by_destination_ip, _by_server_name, _by_transport_protocol,
    _by_application_protocols, _by_source_type, _by_source_ip, _by_source_port,
)
