"""Hostname rules of Gateway API (apis/v1 httproute_types.go Hostnames, gateway_types.go
Listener.Hostname): `*.example.com` matches any name ending in `.example.com` with at least
one more label, never `example.com`."""

from __future__ import annotations


def covers(wildcard: str, name: str) -> bool:
    """Whether `wildcard` (`*.suffix`) matches `name` (a precise or wildcard name)."""
    if not wildcard.startswith("*."):
        return wildcard == name
    suffix = wildcard[1:]  # ".example.com"
    if name.startswith("*."):
        return name != wildcard and name.endswith(suffix)
    return name.endswith(suffix) and len(name) > len(suffix)


def intersect(listener: str | None, route: str) -> str | None:
    """The names both a listener hostname and a route hostname match, as one hostname."""
    if listener is None or listener == route:
        return route
    if covers(listener, route):
        return route
    if covers(route, listener):
        return listener
    return None


def effective(listener: str | None, route_hostnames: tuple[str, ...]) -> tuple[str, ...]:
    """The hostnames a route serves on a listener; () when they do not intersect. A route
    without hostnames takes the listener's (or every name: `*`)."""
    if not route_hostnames:
        return (listener or "*",)
    found = []
    for name in route_hostnames:
        both = intersect(listener, name)
        if both is not None and both not in found:
            found.append(both)
    return tuple(found)


def specificity(hostname: str) -> tuple[int, int, int]:
    """Sort key, most specific first: exact names, then wildcards with more labels, then `*`
    (gateway_types.go: "the higher the number of dots to the right of the wildcard")."""
    if hostname == "*":
        return (2, 0, 0)
    if hostname.startswith("*."):
        return (1, -hostname.count("."), -len(hostname))
    return (0, -hostname.count("."), -len(hostname))
