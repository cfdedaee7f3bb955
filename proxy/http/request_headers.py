"""Request header processing done by the connection manager before any filter runs.

Envoy `ConnectionManagerUtility::mutateRequestHeaders` (docs: "HTTP header manipulation",
"x-forwarded-for", "x-forwarded-proto", "x-request-id", "x-envoy-internal"):

- use_remote_address: the connection's peer is the client; it is appended to XFF (unless
  skip_xff_append); x-forwarded-proto is overwritten with the connection's scheme.
- otherwise the client is found in XFF, `xff_num_trusted_hops` entries from the right; an absent
  x-forwarded-proto is set from the scheme.
- requests from non-internal clients lose Envoy-internal headers (x-envoy-internal and the
  x-envoy-* controls) and the route configuration's internal_only_headers; internal ones get
  `x-envoy-internal: true`.
- x-request-id is generated when absent (generate_request_id), and regenerated for an external
  client at the edge unless preserve_external_request_id.
"""

from __future__ import annotations

import fcntl
import functools
import ipaddress
import os
import socket
import struct

from proxy.codec.headers import RequestHead
from proxy.http.settings import HcmSettings

# ConnectionManagerUtility::cleanInternalHeaders and the router's own control headers.
ENVOY_CONTROL_HEADERS = frozenset((
    "x-envoy-decorator-operation", "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node", "x-envoy-expected-rq-timeout-ms",
    "x-envoy-external-address", "x-envoy-force-trace", "x-envoy-internal", "x-envoy-ip-tags",
    "x-envoy-max-retries", "x-envoy-original-path", "x-envoy-retriable-header-names",
    "x-envoy-retriable-status-codes", "x-envoy-retry-grpc-on", "x-envoy-retry-on",
    "x-envoy-upstream-alt-stat-name", "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response", "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-stream-duration-ms", "x-envoy-hedge-on-per-try-timeout",
))
# Stripped only from edge requests (external and use_remote_address); an external request at
# an intermediate hop keeps them (cleanInternalHeaders; checked against Envoy 1.40).
EDGE_ONLY_HEADERS = frozenset((
    "x-envoy-decorator-operation", "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node", "x-envoy-external-address", "x-envoy-original-path",
))
_INTERMEDIATE_STRIPPED = ENVOY_CONTROL_HEADERS - EDGE_ONLY_HEADERS


@functools.cache
def local_interface_address() -> str:
    """The first non-loopback IPv4 address of this machine (Envoy's `getLocalAddress`), which
    Envoy appends to XFF in place of a loopback peer."""
    siocgifaddr = 0x8915  # Linux SIOCGIFADDR
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _index, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(probe.fileno(), siocgifaddr,
                                     struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
            address = socket.inet_ntoa(packed[20:24])
            if not address.startswith("127."):
                return address
    return "127.0.0.1"


def _xff_entry_for(remote_ip: str) -> str:
    try:
        loopback = ipaddress.ip_address(remote_ip).is_loopback
    except ValueError:
        loopback = False
    return local_interface_address() if loopback else remote_ip


def is_internal(address: str, settings: HcmSettings) -> bool:
    if not settings.internal_networks:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.internal_networks)


def _xff_entries(head: RequestHead) -> list[str]:
    joined = head.headers.joined("x-forwarded-for")
    if not joined:
        return []
    return [entry.strip() for entry in joined.split(",") if entry.strip()]


def mutate_request_headers(head: RequestHead, remote_ip: str, scheme: str,
                           settings: HcmSettings, internal_only: tuple[str, ...] = ()
                           ) -> tuple[str, bool]:
    """Apply the rules above in place; return (trusted client address, internal)."""
    headers = head.headers
    if settings.use_remote_address:
        client = remote_ip
        if not settings.skip_xff_append:
            entries = _xff_entries(head)
            # Envoy appends without a space after the comma.
            headers.set("x-forwarded-for", ",".join([*entries, _xff_entry_for(remote_ip)]))
        headers.set("x-forwarded-proto", scheme)
        internal = is_internal(client, settings)
        # Envoy: internal only when XFF held nothing before us.
        internal = internal and len(_xff_entries(head)) <= 1
    else:
        entries = _xff_entries(head)
        hops = settings.xff_num_trusted_hops
        client = entries[-1 - hops] if len(entries) > hops else ""
        if "x-forwarded-proto" not in headers:
            headers.set("x-forwarded-proto", scheme)
        internal = len(entries) == 1 and is_internal(entries[0], settings)
    edge_external = settings.use_remote_address and not internal
    if not internal:
        stripped = ENVOY_CONTROL_HEADERS if edge_external else _INTERMEDIATE_STRIPPED
        headers.remove_all(stripped.union(internal_only) if internal_only else stripped)
        if settings.use_remote_address:
            headers.set("x-envoy-external-address", client)
    else:
        headers.set("x-envoy-internal", "true")
    request_id = headers.get("x-request-id")
    if settings.generate_request_id and (
        request_id is None or (edge_external and not settings.preserve_external_request_id)
    ):
        headers.set("x-request-id", random_request_id())
    return client or remote_ip, internal


class _RandomPool:
    """Kernel randomness read 4 KiB at a time instead of one getrandom() call per request (as
    Envoy's random generator buffers its bytes), kept as hex text. Emptied in a forked child,
    so two worker processes never hand out the same ids."""

    def __init__(self) -> None:
        self.text = ""
        self.offset = 0

    def take32(self) -> str:
        """32 random hex digits (16 random bytes)."""
        if self.offset + 32 > len(self.text):
            self.text, self.offset = os.urandom(4096).hex(), 0
        start = self.offset
        self.offset = start + 32
        return self.text[start:start + 32]

    def clear(self) -> None:
        self.text, self.offset = "", 0


_random_pool = _RandomPool()
os.register_at_fork(after_in_child=_random_pool.clear)
# RFC 9562 4.1: the variant bits 10 in the top of octet 8, i.e. its first hex digit 8-b.
_VARIANT_DIGIT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def random_request_id() -> str:
    """A random (version 4) UUID in its text form, as Envoy's x-request-id (RFC 9562 5.4);
    the same as str(uuid.uuid4()) without building a UUID object per request."""
    text = _random_pool.take32()
    return (f"{text[:8]}-{text[8:12]}-4{text[13:16]}-{_VARIANT_DIGIT[text[16]]}{text[17:20]}"
            f"-{text[20:]}")
