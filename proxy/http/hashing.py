"""Route hash policies -> one 64-bit hash key for RING_HASH/MAGLEV (Envoy `HashPolicyImpl`).

Each policy that yields a value contributes `xxHash64(value)`; keys combine as
`(key << 1) ^ new` (64-bit), and a `terminal` policy that produced a value stops the walk.
A cookie policy with a TTL whose cookie is absent makes up the cookie (hash of the client's
address) and asks the router to send it back in Set-Cookie, so the client sticks.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from proxy.codec.headers import RequestHead
from proxy.model.route import HashPolicy
from proxy.upstream.lb.base import hash_of

MASK64 = (1 << 64) - 1


@dataclass(slots=True)
class HashResult:  # one per request: slotted, not frozen (cheaper to build)
    key: int | None
    set_cookie: str | None = None  # a Set-Cookie value to add to the response


def cookie_value(request: RequestHead, name: str) -> str | None:
    for header in request.headers.get_all("cookie"):
        for part in header.split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                return value.strip('"')
    return None


def compute_hash(policies: tuple[HashPolicy, ...], request: RequestHead,
                 source_ip: str, remote_address: str) -> HashResult:
    key: int | None = None
    set_cookie: str | None = None
    for policy in policies:
        value, made_cookie = _policy_value(policy, request, source_ip, remote_address)
        if made_cookie:
            set_cookie = made_cookie
        if value is None:
            continue
        new = hash_of(value)
        key = new if key is None else ((key << 1) & MASK64) ^ new
        if policy.terminal:
            break
    return HashResult(key, set_cookie)


def _policy_value(policy: HashPolicy, request: RequestHead, source_ip: str,
                  remote_address: str) -> tuple[str | None, str | None]:
    if policy.kind == "header":
        return request.header(policy.name), None
    if policy.kind == "source_ip":
        return (source_ip or None), None
    if policy.kind == "query_parameter":
        for key, value in parse_qsl(request.query, keep_blank_values=True):
            if key == policy.name:
                return value, None
        return None, None
    found = cookie_value(request, policy.name)
    if found is not None or policy.cookie_ttl is None:
        return found, None
    made = format(hash_of(remote_address), "016x")
    return made, _set_cookie(policy, made)


def _set_cookie(policy: HashPolicy, value: str) -> str:
    parts = [f'{policy.name}="{value}"']
    if policy.cookie_ttl:
        parts.append(f"Max-Age={int(policy.cookie_ttl)}")
    if policy.cookie_path:
        parts.append(f"Path={policy.cookie_path}")
    parts.append("HttpOnly")
    return "; ".join(parts)


